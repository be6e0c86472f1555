"""DICOM decoding, on files written here with pydicom in every photometric variant: pixel values
against hand-computed ones (rescale, VOI LUT, window, bits stored, MONOCHROME1), colour, JPEG
compression, and one clear error for multi-frame and non-image objects."""
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from trainables.data import DataConfig, load_arrays
from trainables.data.decode import decode

SIZE = 8


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                syntax=ExplicitVRLittleEndian, encoded: bytes | None = None, **elements) -> None:
    """A DICOM Part 10 file of ``pixels`` (2-D grey or H x W x 3 colour) and extra ``elements``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "p1"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.PhotometricInterpretation = photometric
    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored or bits, (bits_stored or bits) - 1
    ds.PixelRepresentation = 0
    for k, v in elements.items():
        setattr(ds, k, v)
    if encoded is not None:
        ds.PixelData = encapsulate([encoded])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def ramp(bits: int) -> np.ndarray:
    """SIZE x SIZE uint16 values spread over 0 .. 2^bits - 1."""
    return np.linspace(0, 2**bits - 1, SIZE * SIZE).round().astype(np.uint16).reshape(SIZE, SIZE)


def pixels(path) -> np.ndarray:
    return decode(path, SIZE).image[0].astype(np.int64)


def expected(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.rint((values.astype(np.float64) - low) * 255.0 / (high - low)), 0, 255).astype(np.int64)


def test_monochrome2_12_bit_maps_by_bits_stored_not_the_image_maximum(tmp_path):
    dark = (ramp(12) // 4).astype(np.uint16)  # a film using only the lower quarter of 12 bits
    write_dicom(tmp_path / "a.dcm", dark, bits_stored=12)
    assert np.array_equal(pixels(tmp_path / "a.dcm"), expected(dark, 0, 4095))
    assert pixels(tmp_path / "a.dcm").max() <= 64  # stays dark, not stretched to 255


def test_monochrome1_is_inverted_so_bone_is_bright(tmp_path):
    values = ramp(12)
    write_dicom(tmp_path / "m1.dcm", values, "MONOCHROME1", bits_stored=12)
    write_dicom(tmp_path / "m2.dcm", values, "MONOCHROME2", bits_stored=12)
    assert np.array_equal(pixels(tmp_path / "m1.dcm"), 255 - pixels(tmp_path / "m2.dcm"))
    assert pixels(tmp_path / "m1.dcm")[0, 0] == 255  # stored 0 is white in MONOCHROME1


def test_rescale_slope_and_intercept_then_window(tmp_path):
    values = ramp(12)
    write_dicom(tmp_path / "w.dcm", values, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000,
                WindowCenter=1000, WindowWidth=2000)
    hu = values * 2.0 - 1000
    # DICOM PS3.3 C.11.2.1.2.1 linear window over the rescaled range y = [-1000, 7190]
    y_min, y_max = -1000.0, 4095 * 2.0 - 1000
    c, w = 1000 - 0.5, 2000 - 1.0
    windowed = np.where(hu <= c - w / 2, y_min, np.where(hu > c + w / 2, y_max,
                                                          ((hu - c) / w + 0.5) * (y_max - y_min) + y_min))
    assert np.array_equal(pixels(tmp_path / "w.dcm"), expected(windowed, y_min, y_max))


def test_voi_lut_sequence_is_applied_and_mapped_by_its_depth(tmp_path):
    values = ramp(10)
    lut = (np.arange(1024) ** 0.5 * (4095 / 1023**0.5)).round().astype(np.uint16)  # 12-bit gamma LUT
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 12]
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    write_dicom(tmp_path / "lut.dcm", values, bits_stored=10, VOILUTSequence=Sequence([item]))
    assert np.array_equal(pixels(tmp_path / "lut.dcm"), expected(lut[values], 0, 4095))


def test_eight_bit_rgb_and_ybr_colour(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    write_dicom(tmp_path / "rgb.dcm", rgb, "RGB")
    grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), np.int64)
    assert np.array_equal(pixels(tmp_path / "rgb.dcm"), grey)
    assert np.array_equal(decode(tmp_path / "rgb.dcm", SIZE, channels=3).image, rgb.transpose(2, 0, 1))


def test_jpeg_compressed_dicom_decodes_through_pylibjpeg(tmp_path):
    pytest.importorskip("libjpeg")
    values = (ramp(8) // 1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(values, "L").save(buf, "JPEG", quality=100)
    write_dicom(tmp_path / "j.dcm", values, syntax=JPEGBaseline8Bit, encoded=buf.getvalue())
    got = pixels(tmp_path / "j.dcm")
    jpeg = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.int64)  # the same codestream via Pillow
    assert np.abs(got - jpeg).max() <= 1


def test_multi_frame_and_non_image_objects_are_one_clear_error(tmp_path):
    write_dicom(tmp_path / "multi.dcm", np.zeros((SIZE, SIZE), np.uint16), NumberOfFrames=1)
    ds = pydicom.dcmread(tmp_path / "multi.dcm")
    ds.NumberOfFrames = 2
    ds.PixelData = np.zeros((2, SIZE, SIZE), np.uint16).tobytes()
    ds.save_as(tmp_path / "multi.dcm")
    with pytest.raises(ValueError, match="multi-frame DICOM \\(2 frames\\)"):
        decode(tmp_path / "multi.dcm", SIZE)
    del ds.PixelData
    ds.save_as(tmp_path / "report.dcm")
    with pytest.raises(ValueError, match="without pixel data"):
        decode(tmp_path / "report.dcm", SIZE)


def test_a_folder_of_dicoms_without_suffix_is_found_by_its_magic(tmp_path):
    for c in ("normal", "opacity"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            write_dicom(tmp_path / "data" / c / f"{c}{i}", ramp(12) // (i + 1), bits_stored=12)
    (tmp_path / "data" / "normal" / "notes").write_text("not an image")
    arrays = load_arrays(DataConfig(source="imagefolder", path=tmp_path / "data", load_size=SIZE,
                                    image_size=SIZE, cache_dir=tmp_path / "cache"))
    assert arrays.class_counts().tolist() == [3, 3]
    assert np.array_equal(arrays.images[0, 0].astype(np.int64), expected(ramp(12), 0, 4095))


def test_ybr_full_and_palette_colour(tmp_path):
    from pydicom.pixels import convert_color_space

    rgb = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    write_dicom(tmp_path / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL")
    assert np.abs(decode(tmp_path / "ybr.dcm", SIZE, channels=3).image.astype(int)
                  - rgb.transpose(2, 0, 1)).max() <= 2  # YCbCr round trip in 8 bits
    index = np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE)
    palette = {"Red": np.arange(256) * 257, "Green": (255 - np.arange(256)) * 257, "Blue": np.full(256, 128 * 257)}
    write_dicom(tmp_path / "pal.dcm", index, "PALETTE COLOR",
                **{f"{c}PaletteColorLookupTableDescriptor": [256, 0, 16] for c in palette})
    ds = pydicom.dcmread(tmp_path / "pal.dcm")
    for colour, lut in palette.items():
        ds.add_new(tag_for_keyword(f"{colour}PaletteColorLookupTableData"), "OW", lut.astype("<u2").tobytes())
    ds.save_as(tmp_path / "pal.dcm")
    got = decode(tmp_path / "pal.dcm", SIZE, channels=3).image
    want = np.stack([palette[c][index] >> 8 for c in ("Red", "Green", "Blue")])
    assert np.array_equal(got, want)


def test_negative_rescale_slope_with_a_window_keeps_bone_bright(tmp_path):
    values = ramp(12)
    write_dicom(tmp_path / "pos.dcm", values, bits_stored=12, RescaleSlope=1, RescaleIntercept=0,
                WindowCenter=2048, WindowWidth=4096)
    write_dicom(tmp_path / "neg.dcm", (4095 - values).astype(np.uint16), bits_stored=12, RescaleSlope=-1,
                RescaleIntercept=4095, WindowCenter=2048, WindowWidth=4096)
    assert np.abs(pixels(tmp_path / "neg.dcm") - pixels(tmp_path / "pos.dcm")).max() <= 1


def test_more_than_16_stored_bits_is_one_error(tmp_path):
    write_dicom(tmp_path / "deep.dcm", ramp(12), bits_stored=16)
    ds = pydicom.dcmread(tmp_path / "deep.dcm")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = ramp(12).astype(np.uint32).tobytes()
    ds.save_as(tmp_path / "deep.dcm")
    with pytest.raises(ValueError, match="BitsStored 32"):
        decode(tmp_path / "deep.dcm", SIZE)
