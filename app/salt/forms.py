"""Forms of the salt pages; their option fields are checked by :class:`~app.salt.options.SaltOptions`."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import IntegerField, SelectField, StringField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import Optional

from ..tasks.options import Checked
from ..uploads import IMAGE_EXTENSIONS
from .options import SaltOptions

SEGY_EXTENSIONS = ["sgy", "segy"]


class SaltUploadForm(FlaskForm):
    image = MultipleFileField("Seismic images (PNG, JPEG or TIFF) or SEG-Y volumes (.sgy, .segy); several at once",
                              validators=[FileAllowed(IMAGE_EXTENSIONS + SEGY_EXTENSIONS,
                                                      "PNG, JPEG, TIFF images or SEG-Y files only")])
    threshold = StringField("Salt probability threshold (blank = model default)",
                             validators=[Optional(), Checked(SaltOptions)])
    data_area = StringField("Pictures: where the section is (blank or auto = found; all = the whole picture; "
                            "or left,top,right,bottom in pixels)", validators=[Optional(), Checked(SaltOptions)])
    submit = SubmitField("Segment")


class SegySliceForm(FlaskForm):
    kind = SelectField("Slice", choices=[SelectChoice("inline", "inline"), SelectChoice("crossline", "crossline"),
                                         SelectChoice("time", "time slice (ms)"),
                                         SelectChoice("section", "whole 2-D section"),
                                         SelectChoice("volume", "whole 3-D volume (a job)")])
    number = IntegerField("Number (inline / crossline number, or the sample: time in ms or depth in m)",
                          validators=[Optional()])
    domain = SelectField("The samples are", default="time", choices=[
        SelectChoice("time", "two-way time (ms)"), SelectChoice("depth", "depth (m)")])
    threshold = StringField("Salt probability threshold (blank = model default)",
                             validators=[Optional(), Checked(SaltOptions)])
    fuse = SelectField("Whole volume: lines segmented", default="inline", choices=[
        SelectChoice("inline", "inlines (as their 2-D answers)"),
        SelectChoice("inline+crossline", "inlines + crosslines, averaged")])
    submit = SubmitField("Segment")
