"""The ORM tables of ``SQLConnection`` (SQLAlchemy 2 declarative mapping).

Schema, one database for every run of every experiment written to it::

    experiment(id, name, par_dir)              unique (name, par_dir)
    run(id, experiment_key -> experiment.id, run_id, created, status)
                                               unique (experiment_key, run_id)
    source(id, run_key -> run.id, model_name, source_name)
                                               unique (run_key, model_name, source_name)
    log(id, source_key -> source.id, epoch, metric_name, value)
    tags(id, run_key -> run.id, text)          unique (run_key, text)

An experiment is a name in a folder (two experiments of the same name in
different folders stay apart). ``run.run_id`` is DRYTorch's run id;
``run.status`` is ``running`` while a session is active, then how it ended.
``log`` is append-only: one row per metric of each ``MetricsEvent``, in the
order they arrived (``log.id``); NaN is stored as NULL. A resumed run appends
its rows to the same run; an epoch measured again (after a checkpoint was
loaded) supersedes the rows of that epoch and the later ones when the metrics
are read back.

The table names are singular, so that the same file can also hold the tables
of the built-in ``SQLiteTracker`` (``experiments``, ``runs``...).

The validation loss of every run of an experiment::

    SELECT run.run_id, log.epoch, log.value FROM log
    JOIN source ON source.id = log.source_key
    JOIN run ON run.id = source.run_key
    JOIN experiment ON experiment.id = run.experiment_key
    WHERE experiment.name = 'exp' AND source.source_name = 'Validation'
      AND log.metric_name = 'MSE' ORDER BY log.id;
"""

from __future__ import annotations

import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ['Base', 'Experiment', 'Log', 'Run', 'Source', 'Tags']

_NAME = 255  # a DRYTorch name (experiment, run id, model, source, metric)


class Base(DeclarativeBase):
    """The declarative base of the tables: ``Base.metadata.create_all(engine)``."""


class Experiment(Base):
    """An experiment: a name in an output folder."""

    __tablename__ = 'experiment'
    __table_args__ = (UniqueConstraint('name', 'par_dir'),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(_NAME))
    par_dir: Mapped[str] = mapped_column(String(4096))
    runs: Mapped[list[Run]] = relationship(back_populates='experiment')


class Run(Base):
    """A run of an experiment; one row however often it is resumed."""

    __tablename__ = 'run'
    __table_args__ = (UniqueConstraint('experiment_key', 'run_id'),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_key: Mapped[int] = mapped_column(ForeignKey('experiment.id'))
    run_id: Mapped[str] = mapped_column(String(_NAME))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(32))
    experiment: Mapped[Experiment] = relationship(back_populates='runs')
    sources: Mapped[list[Source]] = relationship(back_populates='run')
    tags: Mapped[list[Tags]] = relationship(back_populates='run')


class Source(Base):
    """Who measured which model in a run: ``(model, Trainer)``, ``(model, Test)``."""

    __tablename__ = 'source'
    __table_args__ = (UniqueConstraint('run_key', 'model_name', 'source_name'),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_key: Mapped[int] = mapped_column(ForeignKey('run.id'))
    model_name: Mapped[str] = mapped_column(String(_NAME))
    source_name: Mapped[str] = mapped_column(String(_NAME))
    run: Mapped[Run] = relationship(back_populates='sources')
    logs: Mapped[list[Log]] = relationship(back_populates='source')


class Log(Base):
    """One value of one metric of a source at an epoch."""

    __tablename__ = 'log'
    __table_args__ = (Index('log_by_source', 'source_key', 'id'),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_key: Mapped[int] = mapped_column(ForeignKey('source.id'))
    epoch: Mapped[int]
    metric_name: Mapped[str] = mapped_column(String(_NAME))
    value: Mapped[float | None] = mapped_column(Float)
    source: Mapped[Source] = relationship(back_populates='logs')


class Tags(Base):
    """A tag of a run (the experiment's tags when the run started)."""

    __tablename__ = 'tags'
    __table_args__ = (UniqueConstraint('run_key', 'text'),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_key: Mapped[int] = mapped_column(ForeignKey('run.id'))
    text: Mapped[str] = mapped_column(String(_NAME))
    run: Mapped[Run] = relationship(back_populates='tags')
