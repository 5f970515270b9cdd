-- Memory savings per policy and mix: the simple policies, each scan rate, and
-- for dsa the largest area with each eviction rule (zero page not admitted,
-- unless only that was run). One host size: savings do not depend on it.
WITH runs AS (
    SELECT *,
        max(area_pages) OVER (PARTITION BY mix) AS largest_area,
        bool_and(admit_zero) OVER (PARTITION BY mix) AS all_admit_zero
    FROM summary_every_snapshot
    WHERE host_mib = (SELECT min(host_mib) FROM summary_every_snapshot)
)
SELECT mix, run, policy, eviction, area_pages, scan_pages_per_s, synthetic,
       100 * savings AS savings_pct, 100 * share_of_oracle AS share_of_oracle_pct,
       100 * savings_reserved AS savings_reserved_pct
FROM runs
WHERE policy <> 'dsa' OR (area_pages = largest_area AND admit_zero = all_admit_zero)
ORDER BY mix, policy, eviction, scan_pages_per_s
