"""Line signals: the verdict leaves the station for the MES (MQTT) and the PLC (Modbus TCP, OPC UA).

Each channel is a pipeline sink (``inspection.pipeline.Sink``) with a ``close``; ``build_line_signals``
makes the ones the settings ask for. Payloads, topics, register map and handshake: README, "Line signals".
"""

from inspection.signals.factory import LineSignal, build_line_signals, close_line_signals

__all__ = ["LineSignal", "build_line_signals", "close_line_signals"]
