"""qcline runtime core: frames in, per-order verdicts out.

This package never imports torch, ultralytics, ``api`` or ``training``: a station install runs it with
onnxruntime and OpenCV alone.
"""
