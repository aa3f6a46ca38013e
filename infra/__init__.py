"""Infrastructure of media-pipeline: the CloudFormation template of the data plane and the
code that deploys it, to AWS or to an emulator (tests, the local stack)."""
