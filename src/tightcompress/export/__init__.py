"""Export packed layers for hardware: `$readmemh` hex files, a manifest and test vectors."""

from tightcompress.export.rtl import RTL_VERSION, RtlLayer, export_rtl, load_rtl

__all__ = ["RTL_VERSION", "RtlLayer", "export_rtl", "load_rtl"]
