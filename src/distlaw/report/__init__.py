"""Plots and a self-contained HTML report of runs, fitted laws and plans."""

from distlaw.report.html import Report
from distlaw.report.plots import parity_figure, student_teacher_figure, supervised_fit_figure

__all__ = ["Report", "parity_figure", "student_teacher_figure", "supervised_fit_figure"]
