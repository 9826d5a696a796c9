"""Speaker recognition on a trained run: closed-set identification, verification, score fusion, embeddings.

* `identify`: sliding-window chunks of each test utterance, whose log-posteriors are summed into one
  utterance-level decision (SincNet's protocol), and accuracy on full utterances;
* `verify`: reproducible trial lists, cosine scoring with optional length and score normalisation
  (z-norm, s-norm against a cohort of training utterances), EER / minDCF;
* `scores`: a run's forward passes under each test condition (clean, centre crops, additive noise);
* `report`: the metrics, ``RUN/speaker_eval.json``, ``RUN/trials.tsv`` and the DET plot;
* `fusion`: score-level fusion of two (or more) trained systems;
* `embed`: embeddings of any folder of audio (``polymodal embed``).

An apps-layer package: it builds on the engine (`load_run`) and never the other way round.
"""

from polymodal.speaker.identify import sliding_windows, utterance_log_posteriors
from polymodal.speaker.report import evaluate_speaker_run, is_speaker_run
from polymodal.speaker.verify import build_trials, z_norm

__all__ = [
    "build_trials",
    "evaluate_speaker_run",
    "is_speaker_run",
    "sliding_windows",
    "utterance_log_posteriors",
    "z_norm",
]
