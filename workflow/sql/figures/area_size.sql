-- Every dsa run against its area size: I/O reduction (= the area's hit ratio,
-- since every lookup is a disk read), its ideal bound, memory savings.
SELECT mix, run, label, run_order, eviction, admit_zero, area_mib, synthetic,
       100 * io_reduction AS io_reduction_pct, 100 * io_reduction_ideal AS io_ideal_pct,
       100 * savings AS savings_pct, 100 * oracle_savings AS oracle_savings_pct
FROM headline
WHERE policy = 'dsa' AND io_reduction IS NOT NULL  -- null: the mix has no disk reads
ORDER BY mix, run_order
