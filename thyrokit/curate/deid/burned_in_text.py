"""Find and mask text, calipers and annotations burned into the scan area of a frame.

Cropping to the scan area removes the annotation screen around an ultrasound image;
what remains inside is found here with classical image analysis. Burned-in text is
drawn by the device in thin strokes of saturated or near-white colour, so:

1. stroke pixels are bright pixels that a white top-hat lifts well above their
   neighbourhood (tissue speckle and the colour flow of Doppler are broad or dim);
2. their connected components are glyphs when glyph-sized and thin (a calcification
   is a compact blob: it fills its box, a glyph does not);
3. glyphs side by side merge into words; a run of two or more glyphs, or a single
   saturated glyph (a letter, a caliper cross), is text;
4. words on one line a space apart join into one box, so the gaps between the words
   of a name go too; the box is grown to the line's full height (room above the
   capitals, descenders below the baseline), which the ink of capitals alone misses;
5. text drawn over a bright tissue line (a capsule, a fascia) joins it into one
   component far too large for a glyph; the long straight runs of such a component
   are taken out first, which frees the letters and crosses drawn over it;
6. caliper lines are dotted: single-pixel dots a few pixels apart, too small to be
   glyphs, found as runs of four or more small marks lying on one straight line (three
   along a row or column), or as the dots strung between two end crosses in line;
7. a mark drawn over a bright tissue spot joins it into one solid component; the
   component's saturated pixels alone show the mark.
8. a glyph that the crop's edge cuts leaves a sliver inside too small for a glyph;
   where something bright touches the crop from outside, the strokes of a band
   around it are looked at too, so the whole glyph is seen and its box, clipped to
   the crop, takes the sliver.

Each box, padded by a pixel for anti-aliasing, is set to zero. When
``tesseract`` is installed it is asked too, as an extra detector; it is never required.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import cv2
import numpy as np

from thyrokit.curate.deid.errors import BurnedInTextError
from thyrokit.curate.deid.ocr import parse_tsv_words, run_tesseract, tesseract_available, upscale
from thyrokit.curate.scan_area import bounding_box

Box = tuple[int, int, int, int]

TOPHAT_SIZE = 9          # wider than any stroke, narrower than tissue structures
MIN_CONTRAST = 50        # top-hat lift of a stroke above its surroundings (0-255 scale)
MIN_BRIGHTNESS = 150     # strokes are drawn bright on the dark screen
SATURATED = 180          # a lone glyph must be this bright to count without neighbours
GLYPH_HEIGHT = (4, 40)   # pixels, smallest to largest character or caliper mark
MAX_GLYPH_FILL = 0.72    # fraction of its box a lone glyph fills at most (a bar is no letter)
MAX_SOLID = 0.34         # fraction of a glyph's pixels that survive a 3x3 cross erosion: strokes are thin
LETTER_GAP = 6           # pixels between glyphs of one word or line
WORD_GAP = 1.2           # words of one line are at most this many glyph heights apart
PAD = 1                  # pixels added around each box for anti-aliased edges
LINE_ABOVE = 0.2         # a text line's box reaches this many ink heights above its ink ...
LINE_BELOW = 0.4         # ... and this many below, where descenders (g, p, y) hang
LINE_SIDE = (1, 3)       # pixels a text line's box reaches left and right of its ink (side bearing, advance)
DOT_AREA = 4             # pixels, largest mark of a dotted caliper line
DOT_SPACING = 10         # pixels, widest gap between neighbouring dots of one line
MIN_DOTS = 4             # dots in a slanted run before it counts as a line ...
MIN_AXIS_DOTS = 3        # ... and in a run along one row or column, which speckle rarely makes
DOT_SCATTER = 1.0        # pixels, largest spread of a run's dots across its line
MARK_SIDE = 12           # pixels, largest side of a caliper end cross (a "+" or "x")
TESSERACT_SCALE = 2      # tesseract reads the strokes enlarged this many times
LINE_LENGTH = 21         # pixels, a straight run this long is tissue: longer than a glyph's stroke
LINE_ANGLES = 16         # directions a straight run is looked for in: a 2-pixel line within 5.6 degrees of one
CRUMB_REACH = 2.0        # pixels, farthest a leftover of a removed line lies from the line's other pixels
EDGE_REACH = 12          # pixels beyond the crop searched for the rest of a glyph it cuts: a wide glyph
INK_LEVEL = 240          # drawn marks are saturated; few tissue pixels are this bright


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Return a grey or RGB image scaled to uint8 (uint16 by its own maximum)."""
    if image.dtype == np.uint8:
        return image
    top = float(image.max()) or 1.0
    return np.clip(image.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)


def stroke_brightness(image: np.ndarray) -> np.ndarray:
    """Return the (H, W) uint8 brightness that text strokes stand out in.

    Grey images are their own brightness. In colour frames the brightest channel is
    taken, except on pixels coloured like Doppler flow (red or blue dominant), which
    are dimmed so the flow map is kept while white, yellow or green text is found.
    """
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    red, green, blue = (image[..., channel].astype(np.int16) for channel in range(3))
    flow = ((red - np.maximum(green, blue) > 60) | (blue - np.maximum(red, green) > 60))
    brightness = np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])  # max(axis=2), 20x faster
    return np.where(flow, 0, brightness).astype(np.uint8)


def stroke_mask(brightness: np.ndarray, keep_mask: np.ndarray) -> np.ndarray:
    """Return the bool (H, W) mask of pixels of a brightness map that look like strokes of text or marks."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    lifted = cv2.morphologyEx(brightness, cv2.MORPH_TOPHAT, kernel)
    return (lifted >= MIN_CONTRAST) & (brightness >= MIN_BRIGHTNESS) & keep_mask.astype(bool)


def band_strokes(brightness: np.ndarray, band: np.ndarray, crop: Box) -> np.ndarray:
    """Return the stroke mask of the `band` around `crop`, the top-hat run only on the strips that see it."""
    x0, y0, x1, y1 = crop
    height, width = brightness.shape
    reach = TOPHAT_SIZE  # an opening's result at a pixel depends on pixels up to TOPHAT_SIZE - 1 away
    strokes = np.zeros(brightness.shape, dtype=bool)
    for rows, columns in ((slice(0, min(y0 + reach, height)), slice(0, width)),
                          (slice(max(y1 - reach, 0), height), slice(0, width)),
                          (slice(0, height), slice(0, min(x0 + reach, width))),
                          (slice(0, height), slice(max(x1 - reach, 0), width))):
        strokes[rows, columns] |= stroke_mask(brightness[rows, columns], band[rows, columns])
    return strokes


def line_kernel(length: int, degrees: float) -> np.ndarray:
    """Return a (length, length) uint8 structuring element: a one-pixel line through the centre at `degrees`."""
    kernel = np.zeros((length, length), dtype=np.uint8)
    half = (length - 1) / 2
    dx, dy = half * np.cos(np.radians(degrees)), half * np.sin(np.radians(degrees))
    cv2.line(kernel, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1, 1)
    return kernel


LINE_KERNELS = tuple(line_kernel(LINE_LENGTH, angle * 180 / LINE_ANGLES) for angle in range(LINE_ANGLES))


def long_line_pixels(mask: np.ndarray) -> np.ndarray:
    """Return the uint8 (H, W) pixels of a uint8 mask that lie on a straight run of LINE_LENGTH in some direction."""
    lines = np.zeros_like(mask)
    for kernel in LINE_KERNELS:
        # Outside the mask is empty: OpenCV's default border would let a run leave through the edge.
        lines |= cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return lines


def detach_from_lines(strokes: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Return the uint8 stroke mask without the long straight runs of components too large to be glyphs."""
    large = (stats[:, cv2.CC_STAT_HEIGHT] > GLYPH_HEIGHT[1]) | (stats[:, cv2.CC_STAT_WIDTH] > 2 * GLYPH_HEIGHT[1])
    large[0] = False
    if not large.any():
        return strokes
    x0, y0, x1, y1 = _union(stats[large])
    window = (slice(y0, y1), slice(x0, x1))  # the opening only where the large components are
    members = np.take(large, labels[window]).astype(np.uint8)
    lines = long_line_pixels(members)
    # Where a curved line's slope falls between two directions the opening leaves single
    # pixels strung along it, which would pass for the dots of a caliper line: they go too.
    # The arms of a cross drawn over the line reach further out, and stay.
    count, crumb_labels, crumb_stats, _ = cv2.connectedComponentsWithStats(members & (1 - lines), connectivity=8)
    off_line = cv2.distanceTransform((lines == 0).astype(np.uint8), cv2.DIST_L2, 3) > CRUMB_REACH
    crumbs = (crumb_stats[:, cv2.CC_STAT_AREA] <= DOT_AREA) & (np.bincount(crumb_labels[off_line], minlength=count) == 0)
    crumbs[0] = False
    detached = strokes.copy()
    detached[window][(lines > 0) | np.take(crumbs, crumb_labels)] = 0
    return detached


def detect_text_boxes(image: np.ndarray, keep_mask: np.ndarray, beyond: np.ndarray | None = None) -> list[Box]:
    """Return the boxes (x0, y0, x1, y1), end exclusive, of text and marks with ink inside `keep_mask`.

    `beyond`, where given, is a band around `keep_mask`'s bounding box (the crop) whose
    strokes count too: of a glyph that the crop's edge cuts, the part inside is a
    sliver too small to be told from speckle, but the whole glyph is found. Only text
    with ink inside `keep_mask` is returned, and the strokes inside the crop are those
    the crop alone shows.
    """
    brightness = stroke_brightness(image)
    keep = keep_mask.astype(bool)
    if beyond is None:
        strokes = stroke_mask(brightness, keep).astype(np.uint8)
    else:
        x0, y0, x1, y1 = bounding_box(keep)
        strokes = band_strokes(brightness, beyond, (x0, y0, x1, y1)).astype(np.uint8)
        strokes[y0:y1, x0:x1] = stroke_mask(brightness[y0:y1, x0:x1], keep[y0:y1, x0:x1])
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    if count <= 1:
        return []
    detached = detach_from_lines(strokes, labels, stats)
    split_by_lines = detached is not strokes
    if split_by_lines:
        strokes = detached
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    shape = image.shape[:2]
    dot_sized = _dot_sized(stats)
    dots = dotted_line_boxes(centroids, dot_sized, shape)
    # The dots of a caliper line are no letters: strung between two end crosses they would
    # make a "word" of the whole measurement and its box would take the nodule with it.
    # Only the dots leave: an end cross inside a line's box is still a mark to mask.
    on_lines = dot_sized & _inside(centroids, dots, shape)
    solid = solid_components(strokes, labels, stats)
    candidates = ~on_lines
    if beyond is not None:
        candidates &= np.bincount(labels[keep & (strokes > 0)], minlength=count) > 0  # some ink inside keep_mask
    words = glyph_boxes(brightness, labels, stats, solid, candidates)
    words += marks_on_spots(brightness, labels, stats, solid)
    lines = join_lines(join_split_words(words) if split_by_lines else words)
    dots += dots_between_marks(centroids[dot_sized & ~on_lines], lines)
    return sorted({_pad(box, shape) for box in lines + dots}, key=lambda b: (b[1], b[0]))


def dots_between_marks(points: np.ndarray, boxes: list[Box]) -> list[Box]:
    """Return a box per dot lying on the straight line between two caliper-sized marks in line with each other.

    A short measurement has only one or two dots between its end crosses, too few to
    be told from speckle as a run; between two crosses on one row or column they are
    the caliper's.
    """
    marks = np.array([((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes
                      if x1 - x0 <= MARK_SIDE and y1 - y0 <= MARK_SIDE], dtype=float).reshape(-1, 2)
    found: list[Box] = []
    for i in range(len(marks)):
        for j in range(i + 1, len(marks)):
            step = marks[j] - marks[i]
            length = float(np.hypot(*step))
            if min(abs(step[0]), abs(step[1])) > 1 or not 0 < length <= MIN_DOTS * DOT_SPACING:
                continue
            along = (points - marks[i]) @ step / length**2
            across = np.abs((points - marks[i]) @ np.array([-step[1], step[0]])) / length
            on = (along > 0) & (along < 1) & (across <= DOT_SCATTER)
            found += [(int(x), int(y), int(x) + 1, int(y) + 1) for x, y in np.rint(points[on]).astype(int)]
    return found


def _inside(points: np.ndarray, boxes: list[Box], shape: tuple[int, ...]) -> np.ndarray:
    """Return, per (x, y) point, whether it lies in any of `boxes`."""
    covered = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[max(y0, 0):y1, max(x0, 0):x1] = True
    cells = np.rint(points).astype(np.int64)
    return covered[cells[:, 1].clip(0, shape[0] - 1), cells[:, 0].clip(0, shape[1] - 1)]


def solid_components(strokes: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Return, per stroke component, whether it is solid: more than MAX_SOLID of it survives a 3x3 cross erosion.

    Strokes one or two pixels wide vanish under the erosion; calcifications do not.
    """
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    core = np.bincount(labels[cv2.erode(strokes, cross) > 0], minlength=stats.shape[0])
    return core > MAX_SOLID * stats[:, cv2.CC_STAT_AREA]


def glyph_boxes(brightness: np.ndarray, labels: np.ndarray, stats: np.ndarray, solid: np.ndarray,
                candidates: np.ndarray) -> list[Box]:
    """Return the ink boxes of words and lone saturated marks among the `candidates` stroke components."""
    count = stats.shape[0]
    widths, heights = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    small = (heights <= GLYPH_HEIGHT[1]) & (widths <= 2 * GLYPH_HEIGHT[1]) & candidates
    small[0] = False
    thin = small & ~solid
    glyphs = thin & (heights >= GLYPH_HEIGHT[0])
    # Small marks (glyphs, the dots and bars of i, :, -, and letters drawn over a bright
    # spot) within a letter gap of each other join into words and lines; only glyphs
    # decide whether a group is text.
    marks = np.take(small, labels)
    joined = cv2.dilate(marks.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (LETTER_GAP, 3)))
    groups, group_labels = cv2.connectedComponents(joined, connectivity=8)
    group_of = np.zeros(count, dtype=np.int32)
    group_of[labels[marks]] = group_labels[marks]
    has_glyph = np.zeros(groups, dtype=bool)
    has_glyph[group_of[glyphs]] = True
    boxes = []
    order = np.flatnonzero(small)
    order = order[has_glyph[group_of[order]]]  # a group without a glyph is no text
    order = order[np.argsort(group_of[order], kind="stable")]
    for members in np.split(order, np.flatnonzero(np.diff(group_of[order])) + 1):
        if members.size == 0:
            continue
        letters = members[glyphs[members]]
        if letters.size == 1 and not _saturated_mark(brightness, labels, stats, letters[0]):
            continue
        if letters.size > 1:
            members = members[_on_the_line(stats, letters, thin)[members]]
        box = _union(stats[members])
        if letters.size > 1:
            box = _full_height(box, stats[letters], brightness.shape)
        boxes.append(box)
    return boxes


def marks_on_spots(brightness: np.ndarray, labels: np.ndarray, stats: np.ndarray, solid: np.ndarray) -> list[Box]:
    """Return the boxes of saturated marks (a caliper's end cross) drawn over a bright tissue spot.

    Mark and spot make one component, too solid for a glyph: a caliper set on a
    nodule's bright rim is the common case. The component's saturated pixels alone,
    if they are a thin mark-sized shape, are the mark.
    """
    spots = solid & (stats[:, cv2.CC_STAT_HEIGHT] <= GLYPH_HEIGHT[1]) & (stats[:, cv2.CC_STAT_WIDTH] <= GLYPH_HEIGHT[1])
    spots[0] = False
    if not spots.any():
        return []
    saturated = brightness >= INK_LEVEL
    inked = np.bincount(labels[saturated], minlength=stats.shape[0])
    spots &= (inked >= 2 * GLYPH_HEIGHT[0]) & (inked < stats[:, cv2.CC_STAT_AREA])
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    boxes = []
    for label in np.flatnonzero(spots):
        x, y, w, h = (int(value) for value in stats[label, :4])
        ink = ((labels[y:y + h, x:x + w] == label) & saturated[y:y + h, x:x + w]).astype(np.uint8)
        parts, _, part_stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        core = cv2.erode(ink, cross)
        for px, py, pw, ph, area in part_stats[1:parts].tolist():
            mark_sized = GLYPH_HEIGHT[0] <= max(pw, ph) <= MARK_SIDE
            thin = np.count_nonzero(core[py:py + ph, px:px + pw]) <= MAX_SOLID * area
            if mark_sized and thin and area <= MAX_GLYPH_FILL * pw * ph:
                boxes.append((x + px, y + py, x + px + pw, y + py + ph))
    return boxes


def _saturated_mark(brightness: np.ndarray, labels: np.ndarray, stats: np.ndarray, label: int) -> bool:
    """Return whether a lone glyph is a drawn mark: open (not a filled blob) and saturated bright."""
    x, y, w, h, area = (int(value) for value in stats[label, :5])
    if area > MAX_GLYPH_FILL * w * h:
        return False
    pixels = brightness[y:y + h, x:x + w][labels[y:y + h, x:x + w] == label]
    return _upper_quartile_reaches(pixels, SATURATED)


def _upper_quartile_reaches(pixels: np.ndarray, level: int) -> bool:
    """Return whether ``np.percentile(pixels, 75) >= level`` for integer `pixels`, mostly by counting.

    The percentile lies between the two order statistics around 75%: when both are on
    one side of `level`, counting the pixels below it decides; otherwise numpy does.
    """
    below = int(np.count_nonzero(pixels < level))
    low = int(0.75 * (pixels.size - 1))
    high = min(low + 1, pixels.size - 1)
    if below <= low:
        return True  # the lower order statistic already reaches `level`
    if below > high:
        return False  # the upper one is still below it
    return float(np.percentile(pixels, 75)) >= level


def _union(rows: np.ndarray) -> Box:
    """Return the box (x0, y0, x1, y1) around the components of these stats rows."""
    x0, y0 = rows[:, cv2.CC_STAT_LEFT].min(), rows[:, cv2.CC_STAT_TOP].min()
    x1 = (rows[:, cv2.CC_STAT_LEFT] + rows[:, cv2.CC_STAT_WIDTH]).max()
    y1 = (rows[:, cv2.CC_STAT_TOP] + rows[:, cv2.CC_STAT_HEIGHT]).max()
    return int(x0), int(y0), int(x1), int(y1)


def dotted_line_boxes(centroids: np.ndarray, dot_sized: np.ndarray, shape: tuple[int, ...]) -> list[Box]:
    """Return boxes over dotted lines: runs of MIN_DOTS or more tiny marks on one straight line.

    Speckle also has isolated bright pixels, but rarely four or more evenly strung on a
    line. Runs are looked for along rows, along columns and in any direction, since the
    two lines of a caliper pair cross and their union is no line. A run along a row or
    column gets one box; a slanted run gets a box per dot, so the tissue beside it is kept.
    Two runs of one row or column less than a dot spacing apart are one line whose
    middle dots a bright spot swallowed: their boxes join across it.
    """
    if dot_sized.sum() < MIN_DOTS:
        return []
    points = np.rint(centroids[dot_sized]).astype(np.int32)
    dots = np.zeros(shape, dtype=np.uint8)
    dots[points[:, 1], points[:, 0]] = 1
    reach = DOT_SPACING + 1
    boxes = []
    # (width, height) of the reach, and the axis across the run: a row, a column, any slant.
    for kernel, across, least in (((reach, 3), 1, MIN_AXIS_DOTS), ((3, reach), 0, MIN_AXIS_DOTS),
                                  ((reach, reach), None, MIN_DOTS)):
        near = cv2.dilate(dots, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        _, runs = cv2.connectedComponents(near, connectivity=8)
        run_of = runs[points[:, 1], points[:, 0]]
        for run in np.flatnonzero(np.bincount(run_of) >= least):  # most dots are speckle, alone
            members = points[run_of == run]
            lines = [members] if across is None else _split_parallel(members, across)
            boxes += [box for line in lines if len(line) >= least and _collinear(line) for box in _run_boxes(line)]
    return _join_while(boxes, _one_dotted_line)


def _one_dotted_line(a: Box, b: Box) -> bool:
    """Return whether two run boxes lie along one row (or one column), at most DOT_SPACING apart."""
    for along, across in ((0, 1), (1, 0)):
        extent = (a[along + 2] - a[along], b[along + 2] - b[along])
        thickness = (a[across + 2] - a[across], b[across + 2] - b[across])
        if max(thickness) <= 3 and min(extent) > 3:
            shared = min(a[across + 2], b[across + 2]) - max(a[across], b[across])
            gap = max(b[along] - a[along + 2], a[along] - b[along + 2])
            return shared > 0 and gap <= DOT_SPACING
    return False


def _dot_sized(stats: np.ndarray) -> np.ndarray:
    """Return, per component (the background excluded), whether it is small enough to be a dot of a dotted line."""
    small = (stats[:, cv2.CC_STAT_AREA] <= DOT_AREA) & (stats[:, cv2.CC_STAT_WIDTH] <= 2) \
        & (stats[:, cv2.CC_STAT_HEIGHT] <= 2)
    small[0] = False
    return small


def _split_parallel(members: np.ndarray, across: int) -> list[np.ndarray]:
    """Return the dots of a row (across=1) or column (across=0) run split into lines a pixel thick.

    Two caliper lines a few pixels apart, or a line crossed by another, merge into one
    run; each row or column that holds dots is taken out in turn, most populated first.
    """
    lines = []
    while len(members):
        values, counts = np.unique(members[:, across], return_counts=True)
        centre = values[np.argmax(counts)]
        on_line = np.abs(members[:, across] - centre) <= 1
        lines.append(members[on_line])
        members = members[~on_line]
    return lines


def _run_boxes(members: np.ndarray) -> list[Box]:
    """Return one box over a run of dots along a row or column, else a box per dot.

    The row or column box reaches half a dot spacing past the end dots: a dot lost in
    bright tissue at either end still goes.
    """
    (x0, y0), (x1, y1) = members.min(axis=0), members.max(axis=0) + 1
    half = DOT_SPACING // 2
    if x1 - x0 <= 3:
        return [(int(x0), int(y0) - half, int(x1), int(y1) + half)]
    if y1 - y0 <= 3:
        return [(int(x0) - half, int(y0), int(x1) + half, int(y1))]
    return [(int(x), int(y), int(x) + 1, int(y) + 1) for x, y in members]


def _collinear(points: np.ndarray) -> bool:
    """Return whether `points` (N, 2) spread at most DOT_SCATTER pixels across their main axis."""
    centred = points - points.mean(axis=0)
    minor = np.linalg.eigvalsh(centred.T @ centred / len(points))[0]
    return float(np.sqrt(max(minor, 0.0))) <= DOT_SCATTER


def _on_the_line(stats: np.ndarray, letters: np.ndarray, thin: np.ndarray) -> np.ndarray:
    """Return, per component, whether it belongs to the letters' line: thin, or centred within its rows.

    A solid blob (a calcification) just above or below a word is tissue and stays out
    of the word's box; one the letters are drawn over sits on the line and goes with it.
    """
    tops, heights = stats[:, cv2.CC_STAT_TOP], stats[:, cv2.CC_STAT_HEIGHT]
    centres = tops + heights / 2
    top, bottom = tops[letters].min(), (tops[letters] + heights[letters]).max()
    return thin | ((centres >= top) & (centres <= bottom))


def _full_height(box: Box, letters: np.ndarray, shape: tuple[int, ...]) -> Box:
    """Return a word's ink box grown to its line's full height, from its letters' stats rows."""
    x0, y0, x1, y1 = box
    top = int(letters[:, cv2.CC_STAT_TOP].min())
    bottom = int((letters[:, cv2.CC_STAT_TOP] + letters[:, cv2.CC_STAT_HEIGHT]).max())
    height = float(statistics.median(letters[:, cv2.CC_STAT_HEIGHT].tolist()))  # np.median, without its overhead
    return (max(x0 - LINE_SIDE[0], 0), max(min(y0, top - round(LINE_ABOVE * height)), 0),
            min(x1 + LINE_SIDE[1], shape[1]), min(max(y1, bottom + round(LINE_BELOW * height)), shape[0]))


def join_lines(boxes: list[Box]) -> list[Box]:
    """Return `boxes` with words of one text line (same rows, a space apart) joined into one box."""
    return _join_while(boxes, _same_line)


def join_split_words(boxes: list[Box]) -> list[Box]:
    """Return `boxes` with the halves of words a removed tissue line cut apart (stacked, touching) joined."""
    return _join_while(boxes, _stacked)


def _same_line(a: Box, b: Box) -> bool:
    """Return whether two word boxes are words of one line: a shared height, rows in common, a space apart."""
    low, high = sorted((a[3] - a[1], b[3] - b[1]))
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    gap = max(b[0] - a[2], a[0] - b[2])
    # Words of one line share a height; a caliper cross beside a word does not.
    return high <= 1.5 * low and overlap >= 0.7 * low and gap <= WORD_GAP * low


def _stacked(a: Box, b: Box) -> bool:
    """Return whether two boxes touch or overlap, one above the other, sharing half the narrower one's columns."""
    shared = min(a[2], b[2]) - max(a[0], b[0])
    touching = min(a[3], b[3]) - max(a[1], b[1]) >= 0
    return touching and shared >= 0.5 * min(a[2] - a[0], b[2] - b[0])


def _join_while(boxes: list[Box], should_join: Callable[[Box, Box], bool]) -> list[Box]:
    """Return `boxes` with any two that `should_join` replaced by their union, until no two do."""
    boxes = sorted(boxes)
    joined = True
    while joined:
        joined = False
        for i, j in ((i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))):
            if should_join(boxes[i], boxes[j]):
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[i], boxes.pop(j)
                boxes[i] = (min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1))
                joined = True
                break
    return boxes


def _pad(box: Box, shape: tuple[int, ...]) -> Box:
    x0, y0, x1, y1 = box
    return max(x0 - PAD, 0), max(y0 - PAD, 0), min(x1 + PAD, shape[1]), min(y1 + PAD, shape[0])


def tesseract_boxes(image: np.ndarray, keep_mask: np.ndarray, min_confidence: float = 60.0) -> list[Box]:
    """Return word boxes that tesseract reads in the strokes inside `keep_mask`; empty when it is not installed."""
    if not tesseract_available():
        return []
    # Over speckle tesseract reads nothing; on the strokes alone, dark on white and doubled, it reads
    # small and bold fonts (which the glyph test above misses).
    view = np.where(stroke_mask(stroke_brightness(image), keep_mask), 0, 255).astype(np.uint8)
    return parse_tsv_words(run_tesseract(upscale(view, TESSERACT_SCALE), 11, tsv=True) or "",
                           min_confidence, TESSERACT_SCALE)


def redact_burned_in_text(image: np.ndarray, keep_mask: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """Return `image` blanked outside `keep_mask` and with text inside it masked, and the masked boxes.

    `image` is grey (H, W) or RGB (H, W, 3), uint8 or uint16; `keep_mask` is the (H, W)
    scan area (bool, or uint8 0/255). The input is not modified.
    """
    keep = keep_mask.astype(bool)
    if keep.shape != image.shape[:2]:
        raise ValueError(f"keep_mask is {keep.shape}, the image is {image.shape[:2]}")
    boxes = detect_text_boxes(image, keep)
    boxes += tesseract_boxes(image, keep)
    return mask_boxes(image, keep, boxes), boxes


def mask_boxes(image: np.ndarray, keep_mask: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Return a copy of `image` set to zero outside `keep_mask` and inside every box."""
    keep = keep_mask.astype(bool).copy()
    for x0, y0, x1, y1 in boxes:
        keep[y0:y1, x0:x1] = False
    out = image.copy()
    out[~keep] = 0
    return out


def redact_frames(frames: np.ndarray, keep_mask: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """Return the frames (N, H, W[, 3]) of a cine with the union of every frame's text boxes masked."""
    keep = keep_mask.astype(bool)
    boxes = cine_text_boxes(frames, keep)
    return np.stack([mask_boxes(frame, keep, boxes) for frame in frames]), boxes


def redact_scan_area(frames: np.ndarray, keep_mask: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """Return full frames (N, H, W[, 3]) cropped to `keep_mask`'s bounding box and redacted, and the boxes.

    As :func:`redact_frames` on the crop; where something bright touches the crop from
    outside (a glyph the edge cuts has ink on both sides of it), text is also searched
    EDGE_REACH pixels past the crop's edge (see :func:`detect_text_boxes`). The boxes
    are in the crop's coordinates.
    """
    keep = keep_mask.astype(bool)
    x0, y0, x1, y1 = bounding_box(keep)
    cropped = keep[y0:y1, x0:x1]
    if not _touched_from_outside(frames, (x0, y0, x1, y1)):
        return redact_frames(frames[:, y0:y1, x0:x1], cropped)
    height, width = keep.shape
    gx0, gy0 = max(x0 - EDGE_REACH, 0), max(y0 - EDGE_REACH, 0)
    gx1, gy1 = min(x1 + EDGE_REACH, width), min(y1 + EDGE_REACH, height)
    grown = keep[gy0:gy1, gx0:gx1]
    reach = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * EDGE_REACH + 1, 2 * EDGE_REACH + 1))
    beyond = cv2.dilate(grown.astype(np.uint8), reach).astype(bool)
    beyond[y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0] = False
    found = cine_text_boxes(frames[:, gy0:gy1, gx0:gx1], grown, beyond)
    dx, dy, w, h = x0 - gx0, y0 - gy0, x1 - x0, y1 - y0
    moved = [(max(bx0 - dx, 0), max(by0 - dy, 0), min(bx1 - dx, w), min(by1 - dy, h)) for bx0, by0, bx1, by1 in found]
    boxes = [box for box in moved if box[2] > box[0] and box[3] > box[1]]
    return np.stack([mask_boxes(frame[y0:y1, x0:x1], cropped, boxes) for frame in frames]), boxes


def _touched_from_outside(frames: np.ndarray, crop: Box) -> bool:
    """Return whether any frame has a stroke-bright pixel in the one-pixel ring just outside `crop`.

    A 16-bit frame is scaled by its own maximum, as :func:`detect_text_boxes` sees it.
    """
    x0, y0, x1, y1 = crop
    height, width = frames.shape[1:3]
    ring = [frames[:, y, x0:x1] for y in (y0 - 1, y1) if 0 <= y < height]
    ring += [frames[:, y0:y1, x] for x in (x0 - 1, x1) if 0 <= x < width]
    if frames.dtype != np.uint8:
        tops = frames.reshape(len(frames), -1).max(axis=1).astype(np.float32)
        scale = (255.0 / np.maximum(tops, 1.0)).reshape(-1, *[1] * (frames.ndim - 2))
        ring = [np.clip(side * scale, 0, 255).astype(np.uint8) for side in ring]
    return any((stroke_brightness(side) >= MIN_BRIGHTNESS).any() for side in ring)


def cine_text_boxes(frames: np.ndarray, keep_mask: np.ndarray, beyond: np.ndarray | None = None) -> list[Box]:
    """Return the union of every frame's text boxes (see :func:`detect_text_boxes`), top to bottom.

    Overlay text is usually static: masking each frame with the boxes found in any
    frame removes text that noise hid from the detector in some of them.
    """
    return sorted({box for frame in frames for box in detect_text_boxes(frame, keep_mask, beyond)},
                  key=lambda b: (b[1], b[0]))


def require_scan_area(burned_in_annotation: str | None, keep_mask: np.ndarray) -> None:
    """Raise BurnedInTextError if the header says text is burned in but no scan area bounds the image."""
    if str(burned_in_annotation or "").strip().upper() == "YES" and keep_mask.astype(bool).all():
        raise BurnedInTextError(
            "BurnedInAnnotation is YES and neither ultrasound regions nor a scan area were found: "
            "the burned-in text cannot be located")
