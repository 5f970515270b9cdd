-- Pages each pair of domains shares: distinct contents both hold at the
-- capture's last snapshot, zero and free pages left out (MiB). One snapshot
-- keeps the self-join to one time's pages, however long the capture.
WITH last AS (SELECT capture, max(snapshot) AS snapshot FROM pages GROUP BY capture),
held AS (
    SELECT DISTINCT p.capture, p.domain, p.hash FROM pages p JOIN last USING (capture, snapshot)
    WHERE p.page_type NOT IN ('zero', 'free')
)
SELECT a.capture, a.domain AS domain_a, b.domain AS domain_b, mib(count(*)) AS shared_mib,
       (SELECT bool_or(synthetic) FROM domains d WHERE d.capture = a.capture) AS synthetic
FROM held a JOIN held b ON a.capture = b.capture AND a.hash = b.hash AND a.domain <> b.domain
GROUP BY ALL
ORDER BY a.capture, domain_a, domain_b
