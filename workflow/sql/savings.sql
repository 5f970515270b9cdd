-- Memory savings per policy and mix: the simple policies, each scan rate, and
-- dsa at its largest area with LRU eviction (or the first rule run, if not
-- LRU), with and without the zero page admitted: admission changes savings far
-- more than eviction does at that size (results/figures/area_size.png compares
-- the rules). One host size: savings do not depend on it.
WITH runs AS (
    SELECT *,
        max(area_pages) OVER (PARTITION BY mix) AS largest_area,
        CASE WHEN bool_or(eviction = 'lru') OVER (PARTITION BY mix) THEN 'lru'
             ELSE min(nullif(eviction, '')) OVER (PARTITION BY mix) END AS shown_eviction
    FROM summary_every_snapshot
    WHERE host_mib = (SELECT min(host_mib) FROM summary_every_snapshot)
)
SELECT mix, run, policy, eviction, area_pages, admit_zero, scan_pages_per_s, synthetic,
       100 * savings AS savings_pct, 100 * share_of_oracle AS share_of_oracle_pct,
       100 * savings_reserved AS savings_reserved_pct
FROM runs
WHERE policy <> 'dsa' OR (area_pages = largest_area AND eviction = shown_eviction)
ORDER BY mix, policy, eviction, admit_zero, scan_pages_per_s
