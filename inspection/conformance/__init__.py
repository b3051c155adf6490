"""Does the unit match its order? Colour, dimensions and part counts measured on the frame.

``check_conformance`` measures; ``inspection.rules.judge`` folds the results into the frame's verdict.
"""

from inspection.conformance.check import CameraCalibration, check_conformance, order_value

__all__ = ["CameraCalibration", "check_conformance", "order_value"]
