-- Pages saved by type and scope (MiB, mean over snapshot times) for the runs
-- figures show that share anything.
SELECT t.mix, t.run, s.label, s.run_order, s.policy, s.synthetic, t.page_type, t.scope,
       mib(t.pages_saved) AS saved_mib
FROM types t JOIN shown_runs s USING (mix, run)
ORDER BY t.mix, s.run_order, t.page_type, t.scope
