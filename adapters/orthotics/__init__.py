"""Foot scan or measurements -> printable custom foot orthosis (insoles).

`design` is the public geometry API (pure functions on plain values) and `parameters` the single
source of the prescription's parameters and their ranges; the FHIR order flow builds on both.
"""
