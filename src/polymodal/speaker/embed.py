"""`polymodal embed RUN AUDIO_DIR --out FILE`: a trained run's embeddings of any folder of audio.

The files are read and resampled to the run's sample rate like the training data; a folder in a
known layout (FSDD style or ``{speaker}/...``) also gives each file's speaker. The npz holds ``names``
(paths relative to the folder, without extension), ``embeddings`` (N, D) float32 and, when known,
``speakers``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.data.speakers import read_folder
from polymodal.engine.evaluate import load_run
from polymodal.speaker.scores import SpeakerScorer


def embed_folder(
    run_dir: str | Path, audio_dir: str | Path, out: str | Path, data_root: str | None = None
) -> dict:
    """Write the npz and return a summary ``{"file", "utterances", "dim", "speakers"}``."""
    scorer = SpeakerScorer(load_run(run_dir, data_root))
    names, speakers, data = read_folder(Path(audio_dir), scorer.rate)
    data = data.to(scorer.run.device)
    emb = scorer.full(data.inputs["audio"], data.lengths["audio"])[1].numpy().astype(np.float32)
    arrays = {"names": np.array(names), "embeddings": emb}
    if speakers is not None:
        arrays["speakers"] = np.array(speakers)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.savez would append ".npz" to a name without it
        np.savez(f, **arrays)
    return {
        "file": str(out),
        "utterances": len(names),
        "dim": int(emb.shape[1]),
        "speakers": speakers is not None,
    }
