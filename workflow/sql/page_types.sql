-- Pages saved by type and scope (MiB, mean over snapshot times), for the oracle
-- (all identical content) and dsa at its largest area with LRU (what the area shares).
WITH chosen AS (
    SELECT DISTINCT mix, run, policy, eviction, area_pages, admit_zero, scan_pages_per_s, synthetic
    FROM summary_every_snapshot s
    WHERE policy = 'oracle' OR (
        policy = 'dsa' AND eviction = 'lru'
        AND admit_zero = (SELECT bool_or(admit_zero) FROM summary_every_snapshot x WHERE x.mix = s.mix)
        AND area_pages = (SELECT max(area_pages) FROM summary_every_snapshot x WHERE x.mix = s.mix)
    )
)
SELECT t.mix, t.run, c.policy, c.eviction, c.area_pages, c.admit_zero, c.scan_pages_per_s, c.synthetic,
       t.page_type, t.scope, t.pages_saved / 256.0 AS saved_mib
FROM types t JOIN chosen c USING (mix, run)
ORDER BY t.mix, t.run, t.page_type, t.scope
