-- Pages each pair of domains shares: distinct contents both hold at the same
-- snapshot, mean over snapshots, zero and free pages left out (MiB).
WITH held AS (
    SELECT DISTINCT capture, domain, snapshot, hash FROM pages
    WHERE page_type NOT IN ('zero', 'free')
),
snapshots AS (SELECT capture, count(DISTINCT snapshot) AS n FROM held GROUP BY capture),
pairs AS (
    SELECT a.capture, a.domain AS domain_a, b.domain AS domain_b, count(*) AS shared
    FROM held a JOIN held b
      ON a.capture = b.capture AND a.snapshot = b.snapshot AND a.hash = b.hash AND a.domain <> b.domain
    GROUP BY ALL
)
SELECT p.capture, p.domain_a, p.domain_b, mib(p.shared / s.n) AS shared_mib,
       (SELECT bool_or(synthetic) FROM domains d WHERE d.capture = p.capture) AS synthetic
FROM pairs p JOIN snapshots s USING (capture)
ORDER BY p.capture, p.domain_a, p.domain_b
