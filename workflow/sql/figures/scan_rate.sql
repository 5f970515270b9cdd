-- Memory saved against the scanner's rate, beside the other shown runs' savings
-- as references (only when the experiment ran scan).
SELECT h.mix, h.run, h.label, h.run_order, h.policy, h.scan_pages_per_s, h.scan_start, h.synthetic,
       100 * h.savings AS savings_pct
FROM headline h
WHERE h.savings IS NOT NULL AND (h.policy = 'scan'
   OR (h.policy NOT IN ('scan', 'none') AND (h.mix, h.run) IN (SELECT (mix, run) FROM shown_runs)))
ORDER BY h.mix, h.run_order
