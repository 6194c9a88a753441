# Stage: importance (rules are added by its issue).
