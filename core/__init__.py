"""Hair counting and shaft-thickness measurement on trichoscope images.

Arrays in, dataclasses out: no files, network, logging or global state changed on import.
"""
from .analysis import analyze, analyze_preview, configure_threads, warm_up
from .overlay import draw_overlay
from .result import AnalysisResult, Hair, PreviewResult, ThicknessHistogram

__all__ = [
    "AnalysisResult",
    "Hair",
    "PreviewResult",
    "ThicknessHistogram",
    "analyze",
    "analyze_preview",
    "configure_threads",
    "draw_overlay",
    "warm_up",
]
