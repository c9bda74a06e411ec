"""What the paper's tables and figures are built from the stages' artifacts: Table 1 (table1),
Tables 2 and 3, Figures 3, 4 and 6 (sweeps), Figure 7 (fig7), the audit's table and figures
(audit_table) and the node-level drawings of circuits, gate graphs and assignments (drawing).
Nothing here trains or scores a model."""
