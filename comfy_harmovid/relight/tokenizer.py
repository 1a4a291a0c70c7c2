"""SD1.5's CLIP tokenizer from files already on the machine; nothing is downloaded.

Accepted: a folder with ``vocab.json`` and ``merges.txt`` (ComfyUI ships SD1's in ``comfy/sd1_tokenizer``;
a diffusers SD1.5 folder has one in ``tokenizer/``), or CLIP's original BPE file ``bpe_simple_vocab_16e6.txt.gz`` (shipped by ``open-clip-torch``), from which the same
vocabulary is rebuilt the way OpenAI's CLIP builds it. Without a path: ``$HARMOVID_CLIP_TOKENIZER``,
then open-clip-torch's file when that package is installed.
"""

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..errors import HarmoVidError

START, END = "<|startoftext|>", "<|endoftext|>"
TOKENIZER_VARIABLE = "HARMOVID_CLIP_TOKENIZER"
OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP uses the first 49152 - 256 - 2 merges of its BPE file.
CLIP_MERGES = 49152 - 256 - 2
MAX_TOKENS = 77  # CLIP's context length: SD1.5 always encodes 77 tokens

WHERE_TO_GET_IT = (
    "Give (with --tokenizer, or in $HARMOVID_CLIP_TOKENIZER) the folder with SD1.5's CLIP tokenizer "
    "(vocab.json + merges.txt), e.g. ComfyUI's comfy/sd1_tokenizer or the tokenizer/ folder of a diffusers SD1.5 "
    "model, or install open-clip-torch, which ships CLIP's BPE file."
)


def require_transformers():
    """The ``transformers`` module (SD1.5's text encoder and tokenizer), or a clear error saying how to get it."""
    try:
        import transformers
    except ImportError as error:
        raise HarmoVidError(
            "IC-Light relighting needs the transformers package for SD1.5's text encoder: "
            "pip install 'comfy-harmovid[relight]' (ComfyUI already has it)."
        ) from error
    return transformers


def _byte_characters() -> List[str]:
    """The 256 printable characters CLIP's byte-level BPE stands for the bytes 0..255, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return [chr(c) for c in characters]


def vocabulary_from_bpe(path: Path) -> Tuple[dict, List[str]]:
    """CLIP's vocabulary and merges rebuilt from its original BPE file (what OpenAI's CLIP does)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        merges = handle.read().split("\n")[1 : CLIP_MERGES + 1]
    merges = [merge for merge in merges if merge.strip()]
    tokens = _byte_characters()
    tokens = tokens + [token + "</w>" for token in tokens]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


def _vocabulary_from_folder(folder: Path) -> Tuple[dict, List[str]]:
    vocabulary = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [line for line in lines if line.strip() and not line.startswith("#version")]
    return vocabulary, merges


def open_clip_bpe() -> Optional[Path]:
    """open-clip-torch's copy of CLIP's BPE file, when that package is installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / OPEN_CLIP_BPE
    return candidate if candidate.is_file() else None


def find_clip_tokenizer(path: Optional[Union[str, Path]] = None) -> Path:
    """``path`` if given, else ``$HARMOVID_CLIP_TOKENIZER``, else open-clip-torch's BPE file; a clear error
    when there is none."""
    path = path or os.environ.get(TOKENIZER_VARIABLE)
    if path:
        return Path(path).expanduser()
    found = open_clip_bpe()
    if found is None:
        raise HarmoVidError(f"No CLIP tokenizer found for SD1.5. {WHERE_TO_GET_IT}")
    return found


@lru_cache(maxsize=4)
def _load(path: Path):
    CLIPTokenizer = require_transformers().CLIPTokenizer
    if path.is_dir():
        if not (path / "vocab.json").is_file() or not (path / "merges.txt").is_file():
            raise HarmoVidError(f"{path} has no vocab.json and merges.txt. {WHERE_TO_GET_IT}")
        vocabulary, merges = _vocabulary_from_folder(path)
    elif path.is_file():
        vocabulary, merges = vocabulary_from_bpe(path)
    else:
        raise HarmoVidError(f"CLIP tokenizer {path} does not exist. {WHERE_TO_GET_IT}")
    if START not in vocabulary or END not in vocabulary:
        raise HarmoVidError(f"{path} is not CLIP's tokenizer (no {START} / {END} tokens). {WHERE_TO_GET_IT}")
    tokenizer = CLIPTokenizer(vocab=vocabulary, merges=[tuple(merge.split()) for merge in merges])
    tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def byte_tokenizer():
    """A CLIP tokenizer with no merges (each byte one token, 514 tokens): for random models in measurements."""
    CLIPTokenizer = require_transformers().CLIPTokenizer
    tokens = _byte_characters()
    tokens = tokens + [token + "</w>" for token in tokens] + [START, END]
    tokenizer = CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])
    tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def load_clip_tokenizer(path: Optional[Union[str, Path]] = None):
    """A transformers ``CLIPTokenizer`` from local files (see the module's docstring for what is accepted)."""
    return _load(find_clip_tokenizer(path).resolve())
