import dagster as dg

# one partition per corpus version: the documents that landed since the previous version
corpus_versions = dg.DynamicPartitionsDefinition(name="corpus_versions")
