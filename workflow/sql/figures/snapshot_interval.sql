-- Savings and COW breaks against the time between the snapshots replayed, for
-- the runs figures show, at every interval the experiment ran (only when it ran
-- more than one). Every interval covers the same first and last snapshot.
SELECT r.mix, r.run, s.label, s.run_order, s.policy, r.synthetic, r.snapshot_every,
       r.snapshot_interval_s, 100 * r.savings AS savings_pct, r.cow_breaks
FROM summary r
JOIN shown_runs s ON s.mix = r.mix AND s.label = r.label
WHERE r.host_mib = (SELECT min(host_mib) FROM summary) AND r.savings IS NOT NULL
  AND (SELECT count(DISTINCT snapshot_every) FROM summary) > 1
ORDER BY r.mix, s.run_order, r.snapshot_interval_s
