"""The shared batch data model: masks, lengths, padding, concatenation."""

import pytest
import torch

from polymodal.batch import Batch, TensorData, cat_batches
from polymodal.errors import ShapeError


def test_default_masks_are_all_present():
    b = Batch({"image": torch.zeros(3, 1, 2, 2)}, {"class": torch.tensor([0, 1, 2])})
    assert b.size == 3 and b.tasks == ["class"]
    assert b.target_mask["class"].all() and b.modality_mask["image"].all()


def test_row_mismatch_is_one_clear_error():
    with pytest.raises(ShapeError, match=r"targets\['class'\] has 2 rows but the batch has 3"):
        Batch({"image": torch.zeros(3, 4)}, {"class": torch.tensor([0, 1])})
    with pytest.raises(ShapeError, match="at least one input modality"):
        Batch({})


def test_unlabeled_view_hides_labels_and_keeps_modality_masks():
    mm = torch.tensor([True, False])
    b = Batch(
        {"a": torch.zeros(2, 3), "b": torch.ones(2, 3)},
        {"t": torch.tensor([1, 0])},
        modality_mask={"a": torch.tensor([True, True]), "b": mm},
    )
    u = b.unlabeled()
    assert u.targets == {} and u.target_mask == {}
    assert torch.equal(u.modality_mask["b"], mm)


def test_tensordata_batch_trims_padding_to_batch_max_and_keeps_lengths():
    audio = torch.zeros(3, 10)
    audio[0, :4] = 1
    audio[1, :6] = 1
    audio[2, :10] = 1
    data = TensorData(
        {"audio": audio}, {"digit": torch.tensor([0, 1, 2])}, {"audio": torch.tensor([4, 6, 10])}
    )
    b = data.batch(torch.tensor([0, 1]))
    assert b.inputs["audio"].shape == (2, 6)
    assert b.lengths["audio"].tolist() == [4, 6]
    assert b.targets["digit"].tolist() == [0, 1]
    assert data.batch(torch.tensor([1]), with_targets=False).targets == {}


def test_missing_labels_in_multitask_batch():
    mask = torch.tensor([True, False, True])
    b = Batch({"x": torch.zeros(3, 2)}, {"left": torch.tensor([1, -1, 3])}, {"left": mask})
    assert torch.equal(b.target_mask["left"], mask)


def test_cat_batches_pads_variable_length_inputs():
    a = Batch({"audio": torch.ones(2, 5)}, lengths={"audio": torch.tensor([5, 3])})
    b = Batch({"audio": torch.ones(1, 8)}, lengths={"audio": torch.tensor([8])})
    c = cat_batches([a, b])
    assert c.inputs["audio"].shape == (3, 8)
    assert c.inputs["audio"][0, 5:].abs().sum() == 0
    assert c.lengths["audio"].tolist() == [5, 3, 8]
    with pytest.raises(ShapeError, match="keys differ"):
        cat_batches(
            [
                Batch({"x": torch.zeros(1, 2)}, {"t": torch.tensor([0])}),
                Batch({"x": torch.zeros(1, 2)}),
            ]
        )
