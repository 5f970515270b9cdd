-- Memory saved per mix and run, for the runs figures show (view shown_runs).
SELECT mix, run, label, run_order, policy, synthetic,
       100 * savings AS savings_pct, 100 * share_of_oracle AS share_of_oracle_pct,
       100 * savings_reserved AS savings_reserved_pct
FROM shown_runs
WHERE savings IS NOT NULL  -- null: the mix has no memory snapshots (summary.left_out)
ORDER BY mix, run_order
