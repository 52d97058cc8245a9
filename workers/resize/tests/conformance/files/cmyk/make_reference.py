"""Reference for the cmyk group: Pillow + LittleCMS (ImageCms) through the engine's press
profile, perceptual intent, to sRGB, 256 px wide. Usage: make_reference.py (from this folder).
Also prints the CIEDE2000 of the old textbook formula and of the press profile against the
reference and against the same picture converted through its own embedded profile
(sharp's Channel_digital_image_CMYK_color.jpg, SWOP), when that file is given as argv[1]."""
import sys
import numpy as np
from PIL import Image, ImageCms

PROFILE = "../../../../assets/profiles/prism-fogra39.icc"
SRC = "Channel_digital_image_CMYK_color_no_profile.jpg"
OUT = "../../expected/cmyk/Channel_digital_image_CMYK_color_no_profile.png"
im = Image.open(SRC)  # Pillow un-inverts Adobe CMYK on load
press = ImageCms.profileToProfile(im, ImageCms.getOpenProfile(PROFILE), ImageCms.createProfile("sRGB"),
                                  renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB")
press.resize((256, round(im.height * 256 / im.width)), Image.LANCZOS).save(OUT, optimize=True)
if len(sys.argv) > 1:
    import io
    from skimage.color import rgb2lab, deltaE_ciede2000
    c = np.asarray(im, float) / 255
    naive = np.stack([(1 - c[..., i]) * (1 - c[..., 3]) for i in range(3)], -1)
    prof = Image.open(sys.argv[1])
    own = ImageCms.profileToProfile(prof, ImageCms.ImageCmsProfile(io.BytesIO(prof.info["icc_profile"])),
                                    ImageCms.createProfile("sRGB"), renderingIntent=0, outputMode="RGB")
    lab = lambda a: rgb2lab(np.asarray(a, float) / 255 if not isinstance(a, np.ndarray) else a)
    ref, emb, nv = lab(press), lab(own), rgb2lab(naive)
    for name, x in [("formula vs press reference", deltaE_ciede2000(nv, ref)),
                    ("formula vs embedded-SWOP conversion", deltaE_ciede2000(nv, emb)),
                    ("press (FOGRA39) vs embedded-SWOP conversion", deltaE_ciede2000(ref, emb))]:
        print(f"{name}: mean {x.mean():.2f}, p95 {np.percentile(x, 95):.2f}")
