-- How savings and COW breaks move when only every k-th snapshot is replayed
-- (k = 1: all). dsa at its largest area with LRU; one host size.
SELECT mix, run, policy, admit_zero, snapshot_every, synthetic,
       100 * savings AS savings_pct, cow_breaks,
       regexp_replace(run, '-e[0-9]+$', '') AS base_run
FROM summary
WHERE host_mib = (SELECT min(host_mib) FROM summary)
  AND (policy <> 'dsa' OR (eviction = 'lru'
       AND area_pages = (SELECT max(area_pages) FROM summary x WHERE x.mix = summary.mix)))
ORDER BY mix, base_run, snapshot_every
