-- Peak footprint (MiB) of a mix's first k domains, and how many fit each host size.
SELECT k.mix, k.run, s.label, s.run_order, s.policy, s.synthetic, k.domains,
       mib(k.peak_footprint) AS peak_mib, k.host_mib, d.domains_per_host
FROM prefixes k
JOIN shown_runs s USING (mix, run)
JOIN summary d ON d.mix = k.mix AND d.run = k.run AND d.host_mib = k.host_mib
WHERE d.domains_per_host IS NOT NULL  -- null: no memory snapshots
ORDER BY k.mix, s.run_order, k.host_mib, k.domains
