"""From circuits to neuron categories (paper sections 3.2-3.3, DESIGN section 5).

- ``gates``: collapse the noising and denoising circuits of one task to node-level edges typed
  AND (noising only), OR (denoising only) or ADDER (both).
- ``cnf``: Tseitin-encode the forget circuit and the retain circuit; write Phi (Eq. 4) as DIMACS
  ``.cnf`` and the split-variable weighted MaxSAT instance that defines conflict neurons as
  ``.wcnf``.
- ``solve``: decide Phi with a CDCL solver, solve the MaxSAT instance with RC2, sort every neuron
  into forget / conflict / retain / safe.
- ``explain``: show the clauses that make a neuron a conflict neuron.
"""
