"""The review gate of autoStructN2V on a terminal: a review hook over the one pipeline."""

from __future__ import annotations

from ..engine.config import MaskExtractorConfig, updated_extractor
from ..engine.errors import ConfigError
from ..engine.mask_extraction import MaskExtractionResult
from ..engine.run import Approve, Decision, Regenerate, ReviewRequest, SkipStage2


def print_extraction(result: MaskExtractionResult) -> None:
    print(result.to_text_grid())
    print(
        f"kernel {result.kernel_size}x{result.kernel_size}, {result.active_pixels} active px, "
        f"coverage {result.coverage_percent:.1f} %, noise floor {result.floor:.3f}"
    )
    print(result.summary())
    for warning in result.warnings:
        print(f"warning: {warning}")


def parse_extractor(line: str, current: MaskExtractorConfig) -> MaskExtractorConfig:
    """``key=value`` pairs (space separated) over ``current``; unknown or bad values name the field."""
    values = {}
    for item in line.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"extractor: expected key=value, got {item!r} (e.g. max_pixels=9)")
        values[key] = value
    return updated_extractor(current, values)


def terminal_review(request: ReviewRequest) -> Decision:
    """Show the mask; approve it, regenerate it with new parameters, or skip stage 2."""
    while True:
        print_extraction(request.extraction)
        if not request.extraction.structured:
            print("recommendation: skip stage 2 (it would equal N2V)")
        answer = input("[a]pprove and train stage 2 / [r]egenerate with new parameters / [s]kip stage 2: ")
        answer = answer.strip().lower()[:1]
        if answer == "a":
            return Approve()
        if answer == "s":
            return SkipStage2()
        if answer == "r":
            line = input("parameters, e.g. base_percentile=60 percentile_decay=1.3 max_pixels=9: ")
            try:
                return Regenerate(parse_extractor(line, request.extractor))
            except ConfigError as err:
                print(f"error: {err}")
