"""Pure torch network modules of CellVQ (encoder, SCD quantisers, ZINB decoder)."""

from foundation.nn.decoder import ZINBDecoder
from foundation.nn.encoder import GeneExpressionEncoder
from foundation.nn.module import CellVQModule
from foundation.nn.quantize import EMAVectorQuantizer, SoftConditionalVQ, code_to_str

__all__ = [
    "CellVQModule",
    "EMAVectorQuantizer",
    "GeneExpressionEncoder",
    "SoftConditionalVQ",
    "ZINBDecoder",
    "code_to_str",
]
