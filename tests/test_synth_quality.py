"""The quality checks: memorisation gate, fidelity/diversity figures, utility scores."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from synth_fixtures import blob_patch

from thyrokit.synth.config import DataConfig, EncoderConfig, SampleConfig
from thyrokit.synth.data import to_tensor
from thyrokit.synth.encoder import encode, train_classifier
from thyrokit.synth.fidelity import fid, kid, precision_recall
from thyrokit.synth.memorisation import Nearest, memorised, nearest_training
from thyrokit.synth.sample import TrainedGenerator, clean_mask, draw_gated
from thyrokit.synth.utility import balanced_accuracy, roc_auc, with_pooled

SIZE = 16


def blobs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return `count` blob patches, masks and 0/1 classes (alternating benign, malignant)."""
    rng = np.random.default_rng(seed)
    pairs = [blob_patch(("benign", "malignant")[i % 2], SIZE, rng) for i in range(count)]
    return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
            np.arange(count) % 2)


@pytest.fixture(scope="module")
def training():
    torch.set_num_threads(1)
    images, masks, classes = blobs(40, seed=1)
    encoder = train_classifier(images, classes, EncoderConfig(steps=5, batch_size=8), 0, torch.device("cpu"))
    return images, masks, encoder, encode(encoder, images)


def planted_generator(train_images: np.ndarray, train_masks: np.ndarray) -> TrainedGenerator:
    """A generator whose even seeds return near-copies of training patches, odd seeds fresh blobs."""
    def draw(labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        images, masks = [], []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            if seed % 2 == 0:
                source = seed % len(train_images)
                noise = rng.integers(-3, 4, (SIZE, SIZE))
                images.append(np.clip(train_images[source].astype(int) + noise, 0, 255).astype(np.uint8))
                masks.append(train_masks[source])
            else:
                image, mask = blob_patch("benign", SIZE, np.random.default_rng(10_000 + seed))
                images.append(image)
                masks.append(mask)
        return to_tensor(np.stack(images), np.stack(masks))
    return TrainedGenerator("planted", "0", DataConfig(size=SIZE), draw)


def test_gate_rejects_planted_near_copies_and_redraws_them(training):
    images, masks, encoder, features = training
    config = SampleConfig(ssim_threshold=0.9, max_attempts=3)
    drawn = draw_gated(planted_generator(images, masks), np.zeros(10, np.int64), 100, encoder, images,
                       features, config)
    # Seeds 100..109: five even ones are copies; their redraws 110..114 hold three more (110, 112, 114),
    # and the last round 115..117 one more (116).
    assert drawn.memorised_rejected == 5 + 3 + 1
    assert drawn.shortfall == 1
    assert len(drawn.labels) == 9 and all(seed % 2 == 1 for seed in drawn.seeds)
    for sample in drawn.images:
        assert max(structural_similarity(sample, real, data_range=255) for real in images) < 0.9


def test_shortlisted_ssim_finds_the_true_nearest_training_patch(training):
    images, _, encoder, features = training
    samples, _, _ = blobs(6, seed=2)
    nearest = nearest_training(samples, encode(encoder, samples), images, features, candidates=4)
    for row, sample in enumerate(samples):
        exact = [structural_similarity(sample, real, data_range=255) for real in images]
        assert nearest.ssim[row] <= max(exact) + 1e-12
        assert nearest.ssim[row] >= sorted(exact)[-3]  # the shortlist may miss only near-ties
    exact_copy = nearest_training(images[:2], features[:2], images, features, candidates=4)
    assert np.allclose(exact_copy.ssim, 1.0) and exact_copy.ssim_index.tolist() == [0, 1]


def test_either_threshold_marks_a_sample_memorised():
    nearest = Nearest(ssim=np.array([0.95, 0.5, 0.5]), ssim_index=np.zeros(3, int),
                      cosine=np.array([0.1, 0.9995, 0.5]), cosine_index=np.zeros(3, int))
    assert memorised(nearest, 0.9, 0.999).tolist() == [True, True, False]
    assert memorised(nearest, 0.9).tolist() == [True, False, False]


def test_kid_and_fid_are_near_zero_for_one_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    real, same, shifted = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(1.0, 1, (300, 8))
    assert abs(kid(real, same, 100, 20)) < 0.02 < kid(real, shifted, 100, 20)
    assert fid(real, same) < 0.5 < 6.0 < fid(real, shifted)


def test_precision_recall_separate_fidelity_from_diversity():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 4))
    assert precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    collapsed = real[:5] + 1e-6  # faithful but not diverse
    precision, recall = precision_recall(real, np.repeat(collapsed, 10, axis=0), k=3)
    assert precision == 1.0 and recall < 0.2
    assert precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)


def test_utility_scores():
    truth = np.array([0, 0, 0, 0, 1, 1])
    assert balanced_accuracy(truth, np.array([0, 0, 0, 0, 0, 1])) == pytest.approx(0.75)
    assert roc_auc(truth, np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.95])) == pytest.approx(7 / 8)
    assert roc_auc(truth, np.full(6, 0.5)) == 0.5
    assert roc_auc(np.zeros(3, int), np.ones(3)) is None


def test_generated_masks_are_cleaned_to_one_filled_region():
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[3:11, 3:11] = 255
    mask[6, 6] = 0  # a hole
    mask[14, 14] = 255  # a speckle island
    cleaned = clean_mask(mask)
    expected = np.zeros_like(mask)
    expected[3:11, 3:11] = 255
    assert np.array_equal(cleaned, expected)
    assert not clean_mask(np.zeros_like(mask)).any()


def test_headline_scores_pool_every_held_out_split_and_skip_empty_ones():
    splits = {"test": (np.zeros((2, 4, 4), np.uint8), np.array([1, 0])),
              "validation": (np.ones((3, 4, 4), np.uint8), np.array([0, 0, 1])),
              "external": (np.zeros((0, 4, 4), np.uint8), np.zeros(0, np.int64))}
    pooled = with_pooled(splits)
    assert sorted(pooled) == ["external", "held_out", "test", "validation"]
    images, truth = pooled["held_out"]
    assert images.shape == (5, 4, 4) and truth.tolist() == [1, 0, 0, 0, 1]
    assert with_pooled({}) == {}
