-- Host footprint over time (MiB) for the runs figures show (views per_time, shown_runs).
SELECT p.mix, p.run, s.label, s.run_order, s.policy, s.synthetic, p.time_s,
       mib(p.footprint) AS footprint_mib
FROM per_time p JOIN shown_runs s USING (mix, run)
WHERE s.savings IS NOT NULL  -- mixes with memory snapshots
ORDER BY p.mix, s.run_order, p.time_s
