-- The summary table users read first: every run in display order, the smallest host size.
SELECT mix, run, label, snapshot_every, domains, synthetic,
       round(mib(peak_footprint), 1) AS peak_mib,
       round(100 * savings, 1) AS savings_pct,
       round(100 * savings_reserved, 1) AS savings_with_area_pct,
       round(100 * share_of_oracle, 1) AS share_of_oracle_pct,
       round(100 * io_reduction, 1) AS io_reduction_pct,
       round(100 * io_reduction_ideal, 1) AS io_ideal_pct,
       cow_breaks, host_mib, domains_per_host, left_out
FROM summary
WHERE host_mib = (SELECT min(host_mib) FROM summary)
ORDER BY mix, run_order
