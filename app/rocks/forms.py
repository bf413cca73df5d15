"""Upload form of the rocks page."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import SelectField, StringField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import Optional

from ..gallery_search import SearchOptions
from ..tasks.options import Checked
from ..uploads import IMAGE_EXTENSIONS


class RocksUploadForm(FlaskForm):
    image = MultipleFileField("Rock photos (PNG, JPEG or TIFF; several at once)",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    k = StringField("Similar images to show", default="10", validators=[Optional(), Checked(SearchOptions)])
    method = SelectField("Similarity method", default="embedding", choices=[
        SelectChoice("embedding", "CNN embedding (default)"), SelectChoice("pixels", "raw pixels (seed)"),
        SelectChoice("kmeans", "K-Means cluster (seed)")])
    submit = SubmitField("Classify and search")
