-- dsa against area size, per eviction rule: I/O reduction (= the area's hit
-- ratio, since every lookup is a disk read), its ideal bound, memory savings.
SELECT mix, eviction, admit_zero, area_pages / 256.0 AS area_mib, synthetic,
       100 * io_reduction AS io_reduction_pct,
       100 * io_reduction_ideal AS io_ideal_pct, 100 * savings AS savings_pct,
       100 * oracle_savings AS oracle_savings_pct
FROM summary_every_snapshot
WHERE policy = 'dsa' AND host_mib = (SELECT min(host_mib) FROM summary_every_snapshot)
ORDER BY mix, eviction, admit_zero, area_pages
