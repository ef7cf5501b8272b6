"""Metabase as code: the dashboards (`tableros`) and their provisioning (`provision`).

Pinned to Metabase v0.50.x (docker image `metabase/metabase:v0.50.10`): the REST shapes used
by `provision` (setup, session, database, permission groups and graphs, collections, cards,
dashboards with `dashcards`) were checked against that release.
"""
