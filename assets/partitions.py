import dagster as dg

# one partition per corpus version: the documents that landed since the previous version
corpus_versions = dg.DynamicPartitionsDefinition(name="corpus_versions")

# what every stage's asset shares: partitioned by corpus version, shown in one group
VERSION_ASSET = {"partitions_def": corpus_versions, "group_name": "memo"}
