"""Measurement and localization of label maps in physical units, and change between two scans."""
from medcnn.measure.compare import compare
from medcnn.measure.components import Component, LabelMeasurement, measure, voxel_size_mm

__all__ = ["Component", "LabelMeasurement", "compare", "measure", "voxel_size_mm"]
