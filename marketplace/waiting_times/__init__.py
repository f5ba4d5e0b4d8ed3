"""Waiting times (lägesbild): monthly aggregate figures per region and care area, their file format,
and the synthetic sample shipped with the package."""
