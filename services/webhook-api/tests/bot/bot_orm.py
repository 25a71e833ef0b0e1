"""The Telegram bot's ORM mapping of `users` and `avatars`, for the tests.

Written from the column definitions of the bot's model (app/database/models/models.py in
sergeyshmagin/Aisha_bot_new, branch V3): SQLAlchemy 2, `Enum(<PyEnum>, native_enum=False)`
(which stores and reads the member NAMES, upper case, and raises LookupError on anything
else), `JSON` columns. The tests use it as the bot does: to create a fresh database
(`create_all`), to insert a user and its avatars, and to load the avatars after the webhook
service changed them.

Usage:
  bot_orm.py create-all URL              create the bot's tables as its ORM does
  bot_orm.py seed URL KIND:REQUEST_ID...  a user and one TRAINING avatar per request id (KIND:
                                          PORTRAIT or STYLE), plus a DRAFT one no callback
                                          names; prints {"request_id": "avatar id", ...}
  bot_orm.py load URL [--core]            every avatar loaded through the ORM, as JSON; exits 1
                                          naming the row when one cannot be loaded. --core maps
                                          only the columns the service creates itself; without
                                          it each avatar also has its finetune_id and the
                                          minio_key of each of its photos (AvatarPhoto).
"""

import enum
import json
import sys
import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    select,
)
from sqlalchemy import Enum as SQLEnum
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class AvatarGender(str, enum.Enum):
    MALE = "male"
    FEMALE = "female"


class AvatarStatus(str, enum.Enum):
    DRAFT = "draft"
    PHOTOS_UPLOADING = "photos_uploading"
    READY_FOR_TRAINING = "ready_for_training"
    TRAINING = "training"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


class AvatarType(str, enum.Enum):
    CHARACTER = "character"
    STYLE = "style"
    CUSTOM = "custom"


class AvatarTrainingType(str, enum.Enum):
    PORTRAIT = "portrait"
    STYLE = "style"


class FALFinetuneType(str, enum.Enum):
    FULL = "full"
    LORA = "lora"


class FALPriority(str, enum.Enum):
    SPEED = "speed"
    QUALITY = "quality"
    HIGH_RES_ONLY = "high_res_only"


def utcnow():
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    telegram_id: Mapped[str] = mapped_column(String(50), unique=True, index=True)
    first_name: Mapped[str] = mapped_column(String(64))
    last_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    language_code: Mapped[str] = mapped_column(String(8), default="ru")
    timezone: Mapped[str | None] = mapped_column(String(32), nullable=True, default="UTC+5")
    is_premium: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Avatar(Base):
    __tablename__ = "avatars"
    id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[AvatarGender] = mapped_column(SQLEnum(AvatarGender, native_enum=False))
    avatar_type: Mapped[AvatarType] = mapped_column(
        SQLEnum(AvatarType, native_enum=False), default=AvatarType.CHARACTER
    )
    training_type: Mapped[AvatarTrainingType] = mapped_column(
        SQLEnum(AvatarTrainingType, native_enum=False), default=AvatarTrainingType.PORTRAIT
    )
    status: Mapped[AvatarStatus] = mapped_column(
        SQLEnum(AvatarStatus, native_enum=False), default=AvatarStatus.DRAFT
    )
    finetune_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    fal_request_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    training_progress: Mapped[int] = mapped_column(Integer, default=0)
    training_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    training_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fal_mode: Mapped[str] = mapped_column(String(20), default="character")
    fal_iterations: Mapped[int] = mapped_column(Integer, default=500)
    fal_priority: Mapped[FALPriority] = mapped_column(
        SQLEnum(FALPriority, native_enum=False), default=FALPriority.QUALITY
    )
    trigger_word: Mapped[str] = mapped_column(String(50), default="TOK")
    lora_rank: Mapped[int] = mapped_column(Integer, default=32)
    learning_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    finetune_type: Mapped[FALFinetuneType] = mapped_column(
        SQLEnum(FALFinetuneType, native_enum=False), default=FALFinetuneType.LORA
    )
    finetune_comment: Mapped[str | None] = mapped_column(String(255), nullable=True)
    trigger_phrase: Mapped[str | None] = mapped_column(String(100), nullable=True)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    multiresolution_training: Mapped[bool] = mapped_column(Boolean, default=True)
    subject_crop: Mapped[bool] = mapped_column(Boolean, default=True)
    create_masks: Mapped[bool] = mapped_column(Boolean, default=False)
    captioning: Mapped[bool] = mapped_column(Boolean, default=True)
    diffusers_lora_file_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    config_file_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    training_logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    training_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_status_check: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    avatar_data: Mapped[dict] = mapped_column(JSON, default=dict)
    training_config: Mapped[dict] = mapped_column(JSON, default=dict)
    fal_response_data: Mapped[dict] = mapped_column(JSON, default=dict)
    photos_count: Mapped[int] = mapped_column(Integer, default=0)
    generations_count: Mapped[int] = mapped_column(Integer, default=0)
    is_main: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PhotoValidationStatus(str, enum.Enum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class AvatarPhoto(Base):
    __tablename__ = "avatar_photos"
    id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    avatar_id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), ForeignKey("avatars.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), ForeignKey("users.id"))
    minio_key: Mapped[str] = mapped_column(String(255))
    file_hash: Mapped[str] = mapped_column(String(64), index=True)
    upload_order: Mapped[int] = mapped_column(Integer)
    validation_status: Mapped[PhotoValidationStatus] = mapped_column(
        SQLEnum(PhotoValidationStatus, native_enum=False), default=PhotoValidationStatus.PENDING
    )
    file_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    format: Mapped[str] = mapped_column(String(10))
    has_face: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    photo_metadata: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CoreBase(DeclarativeBase):
    pass


class CoreAvatar(CoreBase):
    """The columns the webhook service creates when there is no bot table, mapped the bot's way."""

    __tablename__ = "avatars"
    id: Mapped[uuid.UUID] = mapped_column(PGUUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(PGUUID(as_uuid=True))
    name: Mapped[str | None] = mapped_column(String(100))
    training_type: Mapped[AvatarTrainingType | None] = mapped_column(
        SQLEnum(AvatarTrainingType, native_enum=False)
    )
    status: Mapped[AvatarStatus] = mapped_column(SQLEnum(AvatarStatus, native_enum=False))
    fal_request_id: Mapped[str | None] = mapped_column(String(255))
    training_progress: Mapped[int] = mapped_column(Integer)
    training_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    diffusers_lora_file_url: Mapped[str | None] = mapped_column(String(500))
    config_file_url: Mapped[str | None] = mapped_column(String(500))
    training_error: Mapped[str | None] = mapped_column(Text)
    fal_response_data: Mapped[dict | None] = mapped_column(JSON)


def engine_for(url):
    # The service's URLs are libpq's; the bot's prod.env uses SQLAlchemy's asyncpg form.
    url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))


def create_all(url):
    Base.metadata.create_all(engine_for(url))


def seed(url, specs):
    ids = {}
    with Session(engine_for(url)) as session, session.begin():
        user = User(telegram_id=str(uuid.uuid4().int % 10**12), first_name="Anna")
        session.add(user)
        session.flush()
        for spec in specs:
            kind, request_id = spec.split(":", 1)
            avatar = Avatar(
                user_id=user.id,
                name=f"Avatar {request_id}",
                gender=AvatarGender.FEMALE,
                status=AvatarStatus.TRAINING,
                training_type=AvatarTrainingType[kind],
                fal_request_id=request_id,
                training_progress=10,
                training_started_at=utcnow(),
            )
            session.add(avatar)
            session.flush()
            ids[request_id] = str(avatar.id)
        bystander = Avatar(user_id=user.id, name="Draft", gender=AvatarGender.MALE)
        session.add(bystander)
        session.flush()
        ids["draft"] = str(bystander.id)
    print(json.dumps(ids))


def load(url, core):
    model = CoreAvatar if core else Avatar
    engine = engine_for(url)
    with engine.connect() as connection:
        ids = [row[0] for row in connection.exec_driver_sql("SELECT id FROM avatars")]
    rows = []
    with Session(engine) as session:
        for avatar_id in ids:
            try:
                avatar = session.execute(select(model).where(model.id == avatar_id)).scalar_one()
            except LookupError as e:
                sys.exit(f"avatar {avatar_id} cannot be loaded by the bot's ORM: {e}")
            rows.append(
                {
                    "id": str(avatar.id),
                    "status": avatar.status.name,
                    "training_type": avatar.training_type.name if avatar.training_type else None,
                    "progress": avatar.training_progress,
                    "completed_at": avatar.training_completed_at.isoformat()
                    if avatar.training_completed_at
                    else None,
                    "lora_url": avatar.diffusers_lora_file_url,
                    "config_url": avatar.config_file_url,
                    "error": avatar.training_error,
                    "fal_response_data": avatar.fal_response_data,
                }
            )
            if not core:
                photos = session.execute(
                    select(AvatarPhoto)
                    .where(AvatarPhoto.avatar_id == avatar.id)
                    .order_by(AvatarPhoto.upload_order)
                ).scalars()
                rows[-1]["finetune_id"] = avatar.finetune_id
                rows[-1]["photos"] = [photo.minio_key for photo in photos]
    print(json.dumps(rows))


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    command, url = argv[1], argv[2]
    if command == "create-all":
        create_all(url)
    elif command == "seed":
        seed(url, argv[3:])
    elif command == "load":
        load(url, "--core" in argv[3:])
    else:
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
