"""Upload form of the salt page."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import DecimalField, SubmitField
from wtforms.validators import NumberRange, Optional

IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "tif", "tiff", "gif", "bmp", "webp"]


class SaltUploadForm(FlaskForm):
    image = MultipleFileField("Seismic images (PNG, JPEG or TIFF; several at once)",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    threshold = DecimalField("Salt probability threshold (blank = model default)", places=2,
                             validators=[Optional(), NumberRange(0, 1, "between 0 and 1")])
    submit = SubmitField("Segment")
