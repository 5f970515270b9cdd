-- The host's KSM while the captured guests ran, beside xpipe's prediction for the same
-- moment over all the memory KSM scans (only for captures recorded with a spec's `ksm`).
SELECT k.capture, k.guests, k.time_s, k.time_s / 60 AS time_min,
       mib(k.ksm_pages_sharing) AS ksm_mib, mib(k.predicted_sharing_all_mergeable) AS predicted_mib,
       k.ksm_pages_sharing / k.predicted_sharing_all_mergeable AS ratio, k.settled,
       (SELECT bool_or(synthetic) FROM domains d WHERE d.capture = k.capture) AS synthetic
FROM ksm_at_capture k
ORDER BY k.capture, k.guests, k.time_s
