-- Peak footprint (MiB) of a mix's first k domains, and how many fit each host size.
WITH chosen AS (
    SELECT DISTINCT mix, run, policy, synthetic FROM summary_every_snapshot s
    WHERE policy IN ('none', 'zero', 'oracle')
       OR (policy = 'scan' AND scan_pages_per_s = (SELECT max(scan_pages_per_s) FROM summary_every_snapshot))
       OR (
        policy = 'dsa' AND eviction = 'lru' AND NOT admit_zero
        AND area_pages = (SELECT max(area_pages) FROM summary_every_snapshot x WHERE x.mix = s.mix)
    )
)
SELECT c.mix, c.run, c.policy, c.synthetic, k.domains, k.peak_footprint / 256.0 AS peak_mib,
       k.host_pages / 256 AS host_mib, s.domains_per_host
FROM capacity k
JOIN chosen c USING (mix, run)
JOIN summary_every_snapshot s ON s.mix = k.mix AND s.run = k.run AND s.host_mib = k.host_pages / 256
ORDER BY c.mix, c.run, host_mib, k.domains
