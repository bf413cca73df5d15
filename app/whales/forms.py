"""Forms of the whale pages: identification and (admin) enrolment."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..uploads import IMAGE_EXTENSIONS


class WhaleUploadForm(FlaskForm):
    image = MultipleFileField("Whale photos (PNG, JPEG or TIFF; several at once)",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    viewpoint = SelectField("Viewpoint", default="auto", choices=[
        SelectChoice("auto", "auto (portrait: top view, landscape: side view)"),
        SelectChoice("top", "top (drone, the back)"), SelectChoice("left", "left side"),
        SelectChoice("right", "right side")])
    submit = SubmitField("Identify")


class WhaleEnrolForm(FlaskForm):
    admin_token = PasswordField("Admin token (not needed when signed in as an admin)", validators=[Optional()])
    whale_id = StringField("Individual (a known id, or a new one)", validators=[
        DataRequired("give the individual's id"), Length(max=64),
        Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", message="letters, digits, '_', '.' and '-' only")])
    image = MultipleFileField("Photos of this individual",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    submit = SubmitField("Enrol")


class WhaleDecisionForm(FlaskForm):
    """An admin's verdict on one answer: ``confirm`` (the photo is ``whale_id``) or ``new``."""

    admin_token = PasswordField("Admin token (not needed when signed in as an admin)", validators=[Optional()])
    decided_by = StringField("Your name", validators=[DataRequired("say who decides"), Length(max=64)])
    whale_id = StringField("Individual", validators=[Length(max=64), Optional(), Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", message="letters, digits, '_', '.' and '-' only")])
    confirm = SubmitField("Confirm this individual")
    new = SubmitField("New individual")
