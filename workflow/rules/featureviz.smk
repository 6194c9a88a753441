# Stage: featureviz (rules are added by its issue).
