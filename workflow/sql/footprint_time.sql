-- Host footprint over time (MiB) for the runs of the savings figure.
WITH chosen AS (
    SELECT DISTINCT s.mix, s.run, s.policy, s.synthetic
    FROM summary_every_snapshot s
    WHERE s.policy <> 'dsa' OR (
        s.eviction = 'lru' AND NOT s.admit_zero
        AND s.area_pages = (SELECT max(area_pages) FROM summary_every_snapshot x WHERE x.mix = s.mix)
    )
),
per_time AS (
    SELECT mix, run, time_s,
        sum(private_pages) + any_value(area_mapped) AS footprint,
        sum(private_pages) + greatest(any_value(area_reserved), any_value(area_used)) AS footprint_reserved
    FROM timeline
    GROUP BY mix, run, time_s
)
SELECT p.mix, p.run, c.policy, c.synthetic, p.time_s,
       p.footprint / 256.0 AS footprint_mib, p.footprint_reserved / 256.0 AS footprint_reserved_mib
FROM per_time p JOIN chosen c USING (mix, run)
ORDER BY p.mix, p.run, p.time_s
