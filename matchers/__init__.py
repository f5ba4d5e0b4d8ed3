"""Pure matching: the book, feasibility rules, distances and costs, clearing solvers, explanations."""
