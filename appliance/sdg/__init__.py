"""Synthetic data from the customer's documents: answers chosen in code, questions written by the local model,
filtered (filters.py), reviewed by a person (review.py), turned into training examples in the product's own prompt
(examples.py), versioned datasets with a card (dataset.py), and the abstention probe (probe.py)."""
