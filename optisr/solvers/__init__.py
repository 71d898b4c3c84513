"""optisr.solvers"""
