"""Fault drills: commands that break a running qcline on purpose and print one JSON line of figures.

``drills.tcp_proxy`` is also a library for tests (a cuttable loopback proxy in front of a real peer).
"""
