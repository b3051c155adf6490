"""Fault drills: commands that break a running qcline on purpose and print one JSON line of figures.

``drills.tcp_proxy`` is also a library for tests (a cuttable loopback proxy in front of a real peer). The
simulated peers live here too, so a station install can run them: ``drills.plc`` (the PLC: its Modbus / OPC UA
server and its half of the result handshake), ``drills.cameras`` (RTSP / MJPEG scene cameras) and
``drills.line_simulator`` (a moving line: ``qcline demo --line``, ``bench/line.py``); ``drills.peers`` holds
the socket helpers they share.
"""
