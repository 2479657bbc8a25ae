"""The pre-label model's parts: network, augmentations, training, uncertainty, metrics."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from thyrokit.annotate.model.augment import cut_mix, strong_augment, weak_augment
from thyrokit.annotate.model.config import ModelConfig, read_config, write_config
from thyrokit.annotate.model.dataset import Examples, resize_back, to_grey
from thyrokit.annotate.model.evaluate import evaluate, gain_interval
from thyrokit.annotate.model.metrics import average_precision, dice, iou, patient_bootstrap, roc_auc
from thyrokit.annotate.model.predict import Prediction, components, predict, rank_by_uncertainty
from thyrokit.annotate.model.synthetic import blob_image, blob_set
from thyrokit.annotate.model.semi_supervised import SemiConfig, confident_squared_error, train_semi_supervised
from thyrokit.annotate.model.stages import compare_label_fractions, fraction_subsets
from thyrokit.annotate.model.train import (draw_batch, pathology_weights, presence_loss, recompute_batch_norm,
                                           supervised_loss, train_supervised)
from thyrokit.annotate.model.roi_head import crop_box, nodule_box
from thyrokit.annotate.model.unet import UNet

CPU = torch.device("cpu")
TINY = ModelConfig(size=32, channels=8, depth=2, steps=100, batch_size=8, threads=1, mc_samples=4)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def blob_examples(count: int, seed: int, size: int = 32, contrast: float = 0.35) -> Examples:
    images, masks, malignant = blob_set(count, size, seed, contrast)
    return Examples(image_ids=[f"img{i:03d}" for i in range(count)],
                    images=torch.from_numpy(images)[:, None],
                    masks=torch.from_numpy((masks > 0).astype(np.uint8))[:, None],
                    malignant=torch.tensor(malignant, dtype=torch.float32))


LOSSES: list[float] = []


@pytest.fixture(scope="module")
def trained() -> UNet:
    torch.set_num_threads(1)
    return train_supervised(TINY, blob_examples(48, seed=1), CPU,
                            log=lambda step, values: LOSSES.append(values["loss"]))


def test_unet_gives_a_mask_per_pixel_and_a_pathology_per_image():
    masks, malignant = UNet(channels=4, depth=2)(torch.rand(3, 1, 32, 32))
    assert masks.shape == (3, 1, 32, 32) and malignant.shape == (3,)
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(channels=4, depth=2)(torch.rand(1, 1, 30, 30))


def test_weak_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(4, 1, 32, 32)
    mask[:, :, 8:20, 4:14] = 1
    image, moved = weak_augment(mask.clone(), mask, torch.Generator().manual_seed(3))
    assert not torch.equal(moved, mask)  # something moved
    assert ((image > 0.5).float() == moved).float().mean() > 0.98


def test_strong_augmentation_is_seeded_and_stays_in_range():
    image = torch.rand(2, 1, 32, 32)
    first = strong_augment(image, torch.Generator().manual_seed(5))
    again = strong_augment(image, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, image)


def test_cut_mix_pastes_one_box_of_each_image_and_the_same_box_of_its_target_over_the_previous():
    images = torch.arange(1.0, 5.0).view(4, 1, 1, 1).expand(4, 1, 40, 40).clone()  # image i is all i + 1
    targets = images / 10
    mixed, mixed_targets = cut_mix(images, targets, torch.Generator().manual_seed(2), area=(0.25, 0.5))
    assert torch.equal(mixed_targets, mixed / 10)  # the target is cut exactly as its image
    for index in range(4):
        own = mixed[index, 0] == index + 1
        rows, columns = own.any(dim=1).nonzero(), own.any(dim=0).nonzero()
        box = (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
        assert own.sum() == box  # one solid box of its own pixels ...
        assert 0.2 <= box / own.numel() <= 0.55  # ... of about the share asked for
        assert set(mixed[index, 0][~own].unique().tolist()) == {float((index - 1) % 4 + 1)}  # the rest: image i - 1
    again = cut_mix(images, targets, torch.Generator().manual_seed(2), area=(0.25, 0.5))[0]
    assert torch.equal(again, mixed)


def test_training_lowers_the_loss_and_beats_chance_dice(trained):
    assert len(LOSSES) == TINY.steps
    assert np.mean(LOSSES[-10:]) < 0.75 * np.mean(LOSSES[:10])
    validation = blob_examples(16, seed=2)
    scores = evaluate(predict(trained, validation, CPU, mc_samples=1), validation)
    # Chance: call every pixel a nodule.
    chance = np.mean([dice(np.ones((32, 32)), m) for m in validation.masks[:, 0].numpy()])
    assert scores["dice"] > chance + 0.4, scores
    assert scores["auc"] > 0.9, scores  # malignant blobs are dark and irregular, benign ones bright and round
    assert set(scores) == {"dice", "nodule_dice", "false_nodule_rate", "iou", "box_ap50", "auc", "n_images",
                           "n_pathology_patients", "n_malignant_patients"}


def test_training_is_deterministic_for_a_seed():
    data = blob_examples(16, seed=4)
    short = ModelConfig(size=32, channels=4, depth=2, steps=5, batch_size=4, threads=1)
    first, second = (train_supervised(short, data, CPU).state_dict() for _ in range(2))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_an_ambiguous_image_ranks_above_a_clear_one(trained):
    rng = np.random.default_rng(9)
    clear, _, _ = blob_image(32, rng, contrast=0.5, malignant=False)
    faint, _, _ = blob_image(32, rng, contrast=0.06, malignant=False)
    examples = Examples(["clear", "faint"], torch.from_numpy(np.stack([clear, faint]))[:, None])
    prediction = predict(trained, examples, CPU, mc_samples=8)
    assert prediction.uncertainty[1] > prediction.uncertainty[0]
    assert rank_by_uncertainty(prediction.image_ids, prediction.uncertainty) == [1, 0]


def test_mc_dropout_prediction_is_repeatable_for_a_seed(trained):
    examples = blob_examples(4, seed=6).unlabelled()
    first, second = (predict(trained, examples, CPU, mc_samples=4, seed=1) for _ in range(2))
    assert np.array_equal(first.probability, second.probability)


def test_components_become_boxes_in_reading_order_and_small_ones_drop():
    mask = np.zeros((20, 30), bool)
    mask[10:15, 2:6] = True     # lower left, 20 px
    mask[1:4, 20:29] = True     # upper right, 27 px
    mask[18, 0] = True          # a speck
    found = components(mask, min_area=2)
    assert [box for _, box in found] == [(20, 1, 29, 4), (2, 10, 6, 15)]
    assert found[1][0].sum() == 20


def test_masks_map_back_to_the_image_size():
    probability = np.zeros((32, 32), np.float32)
    probability[8:24, 8:24] = 1
    back = resize_back(probability, 60, 90)
    assert back.shape == (60, 90) and back[30, 45] == 1 and back[2, 2] == 0
    assert to_grey(np.full((4, 4, 3), 200, np.uint8)).shape == (4, 4)


def test_metrics_on_known_cases():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[:, :5] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(25 / 75)
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert roc_auc(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.875)
    assert np.isnan(roc_auc(np.array([0.3]), np.array([1])))
    truths = [[(0, 0, 10, 10)], [(5, 5, 15, 15)]]
    assert average_precision([[((0, 0, 10, 10), 0.9)], [((5, 5, 15, 15), 0.8)]], truths) == 1.0
    # A confident false alarm ranked first halves precision at the first hit.
    missed = average_precision([[((0, 0, 10, 10), 0.5), ((50, 50, 60, 60), 0.9)]], [[(0, 0, 10, 10)]])
    assert missed == pytest.approx(0.5)


def test_config_round_trips_and_rejects_unknown_keys(tmp_path):
    write_config(TINY, tmp_path / "config.json", version="prelabel-abc")
    assert read_config(tmp_path / "config.json") == (TINY, {"version": "prelabel-abc"})
    with pytest.raises(ValueError, match="unknown model setting"):
        ModelConfig.from_dict({"size": 32, "epochs": 3})


class Oracle(torch.nn.Module):
    """A 'model' that reads the answer off the image: the mask is the bright pixels, and
    the top-left pixel says malignant (bright) or benign (dark). `sign=-1` inverts it."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = sign

    def forward(self, image: torch.Tensor, detail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return 40 * (image - 0.5), self.sign * 40 * (image[:, 0, 0, 0] - 0.5)


def oracle_examples() -> Examples:
    masks = np.zeros((6, 1, 16, 16), np.uint8)
    masks[:, :, 6:10, 6:10] = 1
    malignant = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, float("nan")])
    images = masks * 255
    images[:, 0, 0, 0] = np.where(malignant.numpy() == 1.0, 255, 0)
    masks[:, 0, 0, 0] = images[:, 0, 0, 0] > 0
    return Examples([f"img{i}" for i in range(6)], torch.from_numpy(images), torch.from_numpy(masks), malignant)


@pytest.mark.parametrize("mc_samples", [1, 4])
def test_a_perfect_ranker_scores_auc_one_through_predict_and_evaluate(mc_samples):
    # The path both stages score validation with; an inverted ranker must score 0, not 1.
    examples = oracle_examples()
    right = evaluate(predict(Oracle(), examples, CPU, mc_samples=mc_samples), examples)
    wrong = evaluate(predict(Oracle(-1.0), examples, CPU, mc_samples=mc_samples), examples)
    assert right["dice"] == 1.0 and right["auc"] == 1.0
    assert wrong["auc"] == 0.0


def test_every_patient_counts_once_in_the_scores():
    # Patient "cine" has three frames the model gets wrong, two others one right frame each:
    # per image the AUC would be 2/8, per patient it is 1/2 (one right pair, one wrong).
    scores = np.array([0.1, 0.1, 0.1, 0.9, 0.5])
    labels = np.array([1, 1, 1, 1, 0])
    weights = np.array([1 / 3, 1 / 3, 1 / 3, 1.0, 1.0])
    assert roc_auc(scores, labels) == pytest.approx(2 / 8)
    assert roc_auc(scores, labels, weights) == pytest.approx(0.5)
    examples = oracle_examples()
    framed = dataclasses.replace(examples, groups=["cine", "cine", "cine", "a", "b", "c"])
    assert framed.weights().tolist() == pytest.approx([1 / 3] * 3 + [1.0] * 3)
    assert framed.subset([0, 3]).groups == ["cine", "a"]
    assert framed.unlabelled().groups == framed.groups
    # The AUC rests on patients "cine" (malignant, 3 frames), "a" and "b" (img5's pathology is unknown).
    scored = evaluate(predict(Oracle(), framed, CPU, mc_samples=1), framed)
    assert (scored["n_pathology_patients"], scored["n_malignant_patients"]) == (3, 1)
    assert (evaluate(predict(Oracle(), examples, CPU, mc_samples=1), examples)["n_malignant_patients"]) == 2


def test_batches_draw_every_patient_equally_often():
    # One patient with 20 cine frames beside 4 patients with one image each.
    groups = ["cine"] * 20 + ["a", "b", "c", "d"]
    examples = Examples([f"img{i}" for i in range(24)], torch.zeros(24, 1, 8, 8, dtype=torch.uint8), groups=groups)
    drawn = torch.cat([draw_batch(examples, 16, torch.Generator().manual_seed(seed)) for seed in range(200)])
    share_of_cine = (drawn < 20).float().mean().item()
    assert share_of_cine == pytest.approx(1 / 5, abs=0.03)  # per image it would be 20/24
    reweighed = examples.weights()
    reweighed[:] = 0.0  # a caller reweighing its copy in place leaves the set's weights as they were
    assert examples.weights()[0].item() == pytest.approx(1 / 20) and examples.weights()[-1].item() == 1.0


def test_nodule_batches_draw_benign_and_malignant_alike_each_patient_alike_and_never_an_unknown():
    malignant = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, float("nan"), float("nan")])
    groups = ["a", "b", "b", "b", "c", "d", "e"]   # patient b: a clip of three benign frames
    examples = Examples([f"img{i}" for i in range(7)], torch.zeros(7, 1, 8, 8, dtype=torch.uint8),
                        torch.ones(7, 1, 8, 8, dtype=torch.uint8), malignant, groups)
    weights = pathology_weights(examples)
    assert weights.tolist() == pytest.approx([0.5, 1 / 12, 1 / 12, 1 / 12, 0.25, 0.0, 0.0])


def test_segmentation_passes_leave_the_pathology_head_untouched():
    # Without a nodule of known pathology there is nothing for the head to learn: neither
    # its weights' gradients nor its batch-norm statistics may move.
    unknown = dataclasses.replace(blob_examples(8, seed=7), malignant=torch.full((8,), float("nan")))
    model = UNet(channels=4, depth=2).train()
    before = {key: value.clone() for key, value in model.pathology_head.state_dict().items()}
    supervised_loss(model, unknown, pathology_weights(unknown), 4, torch.Generator().manual_seed(0),
                    torch.Generator().manual_seed(1), CPU).backward()
    assert all(torch.equal(value, before[key]) for key, value in model.pathology_head.state_dict().items())
    assert all(parameter.grad is None for parameter in model.pathology_head.parameters())
    assert all(parameter.grad is not None for parameter in model.encoders.parameters())


def test_the_pathology_crop_holds_the_nodule_and_its_rim_and_nothing_far_from_it():
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:30, 40:50] = 1.0            # a 10 px nodule right of centre, above it
    box = nodule_box(mask)
    assert torch.allclose(box[:, :2], torch.tensor([[(45 - 32) / 32, (25 - 32) / 32]] * 2), atol=1e-3)
    crop = crop_box(mask, box, 32)[:, 0]
    inside = crop > 0.5
    rows, columns = inside.any(dim=2), inside.any(dim=1)
    assert rows[:, :4].sum() == 0 and rows[:, -4:].sum() == 0 and columns[:, :4].sum() == 0  # a rim all round
    assert 0.2 < inside.float().mean() < 0.6  # the nodule fills a good part of the crop
    image = mask.clone()
    image[1, :, 50:, :10] = 1.0              # something bright far away, in the second image only
    crops = crop_box(image, box, 32)
    assert torch.equal(crops[0], crops[1])
    whole = nodule_box(torch.zeros(1, 1, 64, 64))  # no nodule at all: the whole frame
    assert torch.allclose(whole, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-3)


def test_the_pathology_crop_cuts_the_same_region_out_of_the_image_at_any_size():
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(1, 1, 256, 256)
    mask = torch.zeros(1, 1, 64, 64)
    mask[:, :, 8:24, 30:40] = 1.0
    box = nodule_box(mask)
    fine = crop_box(ramp, box, 16)
    coarse = crop_box(torch.nn.functional.interpolate(ramp, size=64, mode="area"), box, 16)
    assert (fine - coarse).abs().max() < 0.02


def test_each_patients_most_uncertain_image_ranks_before_any_second_one():
    image_ids = ["c1", "c2", "c3", "a", "b"]
    uncertainty = np.array([0.9, 0.8, 0.7, 0.5, 0.6])   # one cine clip holds the three most uncertain
    assert rank_by_uncertainty(image_ids, uncertainty) == [0, 1, 2, 4, 3]
    groups = ["cine", "cine", "cine", "a", "b"]
    assert rank_by_uncertainty(image_ids, uncertainty, groups) == [0, 3, 4, 2, 1]


def test_a_trained_model_normalises_as_its_own_weights_do_on_the_labelled_images(trained):
    # Eval-mode statistics recomputed for the returned weights: on one batch of all the
    # labelled images, eval mode then normalises as training mode (batch statistics) does.
    labelled = blob_examples(8, seed=2)
    model = copy.deepcopy(trained)
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_var.mul_(10.0)  # stale statistics, as the moving average of weights leaves them
    images = labelled.images.float() / 255.0
    nodules = labelled.malignant.isnan().logical_not()
    masks = labelled.masks[nodules].float()

    def batch_statistics_pass(net: UNet) -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        for norm in net.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.train()
        with torch.no_grad():
            return net.segment(images), net.pathology_head(images[nodules], masks)

    stale = copy.deepcopy(model).eval()
    recompute_batch_norm(model, labelled, batch_size=len(labelled), device=CPU)
    with torch.no_grad():
        recomputed = model.segment(images), model.pathology_head(images[nodules], masks)
        before = stale.segment(images)
    wanted = batch_statistics_pass(copy.deepcopy(model))
    assert (before.sigmoid() - wanted[0].sigmoid()).abs().max() > 0.05
    for ours, theirs in zip(recomputed, wanted):  # within the unbiased-variance correction of a small batch
        torch.testing.assert_close(ours.sigmoid(), theirs.sigmoid(), atol=2e-3, rtol=0)
    assert not model.training


def test_semi_supervised_training_fine_tunes_a_copy_of_the_supervised_model(trained):
    labelled, unlabelled = blob_examples(8, seed=2), blob_examples(16, seed=3).unlabelled()
    start = {key: value.clone() for key, value in trained.state_dict().items()}
    unchanged = train_semi_supervised(TINY, SemiConfig(steps=0), trained, labelled,
                                      unlabelled, CPU)
    assert all(torch.equal(value, start[key]) for key, value in unchanged.named_parameters())
    tuned = train_semi_supervised(TINY, SemiConfig(steps=5, ramp=2), trained, labelled,
                                  unlabelled, CPU)
    assert any(not torch.equal(value, start[key]) for key, value in tuned.state_dict().items())
    assert all(torch.equal(value, start[key]) for key, value in trained.state_dict().items())
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())


def test_the_label_fraction_report_gives_the_supervised_model_the_same_fine_tuning_steps():
    # With every train image labelled there is nothing unlabelled to learn from: the two
    # models then differ only if the supervised one was trained fewer steps.
    train = blob_examples(12, seed=4)
    short = dataclasses.replace(TINY, steps=60)
    report = compare_label_fractions(short, SemiConfig(steps=30, ramp=2), train, list(range(12)),
                                     blob_examples(6, seed=5), [1.0], CPU)["labels_100pct"]
    assert report["n_labelled"] == 12
    for metric in ("dice", "auc", "nodule_dice", "false_nodule_rate"):
        np.testing.assert_equal(report[f"{metric}_supervised"], report[f"{metric}_semi_supervised"], metric)


def test_a_false_nodule_on_an_empty_image_costs_as_much_as_a_missed_one():
    empty = torch.zeros(1, 1, 64, 64)
    with_nodule = empty.clone()
    with_nodule[:, :, 20:30, 20:30] = 1.0
    confident_blob = torch.full((1, 1, 64, 64), -6.0)
    confident_blob[:, :, 20:30, 20:30] = 6.0    # the model sees a nodule there
    nothing = torch.full((1, 1, 64, 64), -6.0)   # the model sees none
    false_alarm = presence_loss(confident_blob, empty).item()
    missed = presence_loss(nothing, with_nodule).item()
    assert false_alarm == pytest.approx(missed) and false_alarm > 5.0
    assert presence_loss(confident_blob, with_nodule).item() < 0.01
    # The pixel loss of the same false blob is diluted by the 4,096 pixels around it.
    pixel = torch.nn.functional.binary_cross_entropy_with_logits(confident_blob, empty).item()
    assert pixel < 0.2


class AlwaysSeesANodule(torch.nn.Module):
    """A 'model' that outlines the same square on every image, whatever it shows."""

    def forward(self, image: torch.Tensor, detail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.full_like(image, -20.0)
        logits[:, :, 6:10, 6:10] = 20.0
        return logits, torch.zeros(image.shape[0])


def test_false_nodules_on_empty_images_are_told_apart_from_the_outlines():
    examples = oracle_examples()
    empty = dataclasses.replace(examples, masks=examples.masks.clone(), images=examples.images.clone())
    empty.masks[3:] = 0    # the last three images hold no nodule
    empty.images[3:] = 0
    always = evaluate(predict(AlwaysSeesANodule(), empty, CPU, mc_samples=1), empty)
    assert always["nodule_dice"] == pytest.approx(1.0, abs=0.1)   # the top-left pixel of the truth is missed
    assert always["false_nodule_rate"] == 1.0 and always["dice"] < 0.6
    oracle = evaluate(predict(Oracle(), empty, CPU, mc_samples=1), empty)
    assert oracle["false_nodule_rate"] == 0.0 and oracle["dice"] == 1.0


def test_unlabelled_images_weighted_zero_leave_the_fine_tuned_model_bit_for_bit_as_without_them(trained):
    # The unlabelled images draw from random numbers of their own: the labelled batches,
    # their views and their dropout are the same with and without them, so the
    # label-fraction report's two models differ only by what the unlabelled images teach.
    labelled, unlabelled = blob_examples(8, seed=2), blob_examples(16, seed=3).unlabelled()
    silent = SemiConfig(steps=6, ramp=2, unlabelled_weight=0.0)
    without = train_semi_supervised(TINY, silent, trained, labelled, unlabelled.subset([]), CPU)
    weighted_zero = train_semi_supervised(TINY, silent, trained, labelled, unlabelled, CPU)
    assert all(torch.equal(value, weighted_zero.state_dict()[key]) for key, value in without.state_dict().items())
    taught = train_semi_supervised(TINY, dataclasses.replace(silent, unlabelled_weight=10.0), trained, labelled,
                                   unlabelled, CPU)
    assert any(not torch.equal(value, taught.state_dict()[key]) for key, value in without.state_dict().items())


def test_the_teachers_foreground_weighs_its_share_of_the_consistency_however_small_the_nodule():
    target = torch.zeros(1, 1, 10, 10)
    target[0, 0, 0, 0] = 1.0                   # a one-pixel nodule among 99 background pixels
    target[0, 0, 9, 9] = 0.5                   # a pixel the teacher is unsure of: it counts for nothing
    missed = target.clone()
    missed[0, 0, 0, 0] = 0.0                   # the student misses the nodule
    missed[0, 0, 9, 9] = 0.0
    assert confident_squared_error(missed, target, 0.9) == pytest.approx(1 / 99)
    assert confident_squared_error(missed, target, 0.9, foreground_share=0.2) == pytest.approx(0.2)
    stray = target.clone()
    stray[0, 0, 5, 5] = 1.0                    # the student calls one background pixel foreground
    assert confident_squared_error(stray, target, 0.9, foreground_share=0.2) == pytest.approx(0.8 / 98)
    assert confident_squared_error(target, target, 0.9, foreground_share=0.2) == 0.0


def test_the_pathology_head_learns_from_unlabelled_nodules_only_through_its_consistency_loss(trained):
    labelled, unlabelled = blob_examples(8, seed=2), blob_examples(16, seed=3).unlabelled()
    masks_only = SemiConfig(steps=6, ramp=2, pathology_weight=0.0)
    without = train_semi_supervised(TINY, masks_only, trained, labelled, unlabelled.subset([]), CPU)
    mask_taught = train_semi_supervised(TINY, masks_only, trained, labelled, unlabelled, CPU)
    both_taught = train_semi_supervised(TINY, dataclasses.replace(masks_only, pathology_weight=1.0), trained,
                                        labelled, unlabelled, CPU)

    def head(model: UNet) -> dict[str, torch.Tensor]:
        return model.pathology_head.state_dict()

    assert any(not torch.equal(value, mask_taught.state_dict()[key]) for key, value in without.state_dict().items())
    assert all(torch.equal(value, head(mask_taught)[key]) for key, value in head(without).items())
    assert any(not torch.equal(value, head(both_taught)[key]) for key, value in head(without).items())


def test_the_patient_bootstrap_counts_each_patient_once_and_collapses_on_a_constant():
    values = np.array([1.0] * 100 + [0.0] * 9)          # one long clip gains 1, nine patients gain 0
    groups = ["clip"] * 100 + [f"p{i}" for i in range(9)]
    weights = np.array([1 / 100] * 100 + [1.0] * 9)

    def mean_gain(index):
        return float(np.average(values[index], weights=weights[index]))

    low, high = patient_bootstrap(mean_gain, groups, rounds=500, seed=0)
    assert low == 0.0 and 0.2 < high < 0.5               # a draw without the clip gains nothing
    assert patient_bootstrap(lambda index: 0.25, groups, rounds=50) == (0.25, 0.25)
    assert patient_bootstrap(mean_gain, groups, rounds=500, seed=0) == (low, high)


def test_a_prediction_gains_nothing_over_itself_and_a_better_one_gains_above_zero():
    truth = blob_examples(24, seed=6)
    truth = dataclasses.replace(truth, groups=[f"patient{i // 2}" for i in range(24)])
    masks = truth.masks[:, 0].numpy().astype(np.float32)
    malignant = truth.malignant.numpy()
    perfect = Prediction(truth.image_ids, masks, np.nan_to_num(malignant), np.zeros(24))
    blurred = Prediction(truth.image_ids, np.roll(masks, 3, axis=2) * 0.9, np.full(24, 0.5, np.float32), np.zeros(24))
    same = gain_interval(perfect, perfect, truth, rounds=200)
    assert same == {"dice_gain_low": 0.0, "dice_gain_high": 0.0, "auc_gain_low": 0.0, "auc_gain_high": 0.0}
    better = gain_interval(perfect, blurred, truth, rounds=200)
    assert 0 < better["dice_gain_low"] <= better["dice_gain_high"] <= 1
    assert better["auc_gain_low"] > 0


def test_label_fractions_are_nested_and_keep_each_pathology_in_its_share():
    labelled = list(range(100, 300))
    strata = ["malignant"] * 14 + ["benign"] * 66 + ["unknown"] * 120  # the demo's proportions
    fractions = [0.05, 0.1, 0.3, 0.5]
    for seed in range(20):
        subsets = fraction_subsets(labelled, fractions, seed, strata)
        plain = fraction_subsets(labelled, fractions, seed)
        for smaller, larger in zip(fractions, fractions[1:]):
            assert set(subsets[smaller]) < set(subsets[larger])
        for fraction, keep in subsets.items():
            assert len(keep) == len(plain[fraction]) == round(fraction * 200)
            kept = Counter(strata[i - 100] for i in keep)
            for name, share in (("malignant", 0.07), ("benign", 0.33), ("unknown", 0.6)):
                assert abs(kept[name] - share * len(keep)) <= 1, (seed, fraction, kept)
    assert fraction_subsets(labelled, [0.3], 0, strata) != fraction_subsets(labelled, [0.3], 1, strata)
