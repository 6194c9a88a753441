# Stage: explain (rules are added by its issue).
